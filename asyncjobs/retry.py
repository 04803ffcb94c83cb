"""How long a failed job waits before its next attempt."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping
from typing import Any

from . import validation
from .errors import ConfigurationError

ExceptionTypes = tuple[type[BaseException], ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter: attempt n waits about base * 2**(n-1) seconds.

    The jitter spreads a burst of failures (a database blip, a rate limit) so the retries
    don't arrive together; `cap` bounds the wait.
    """

    base: float = 1.0
    cap: float = 3600.0
    jitter: bool = True

    def __post_init__(self) -> None:
        for name in ("base", "cap"):
            validation.seconds(f"Backoff {name}", getattr(self, name), most=validation.MAX_DELAY)
        if not isinstance(self.jitter, bool):
            raise ConfigurationError(f"Backoff jitter must be True or False, got {self.jitter!r}")

    def to_json(self) -> dict[str, Any]:
        """What is stored on a job row for a per-call backoff."""
        return {"base": self.base, "cap": self.cap, "jitter": self.jitter}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Backoff:
        """The inverse of `to_json`."""
        return cls(base=value["base"], cap=value["cap"], jitter=value["jitter"])

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        raw = min(self.cap, self.base * 2 ** min(max(attempt - 1, 0), 62))
        return random.uniform(raw / 2, raw) if self.jitter else raw


def exception_types(name: str, value: object) -> ExceptionTypes:
    """`value` (one exception class or a tuple of them) as a tuple, else ConfigurationError."""
    types = value if isinstance(value, tuple) else (value,)
    for kind in types:
        if not (isinstance(kind, type) and issubclass(kind, BaseException)):
            raise ConfigurationError(
                f"{name} takes exception classes (e.g. {name}=(OSError, TimeoutError)), "
                f"got {kind!r}"
            )
    return types


def validate_backoff(value: object) -> None:
    """Raise ConfigurationError unless `value` is a Backoff or None."""
    if value is not None and not isinstance(value, Backoff):
        raise ConfigurationError(
            f"retry must be an asyncjobs.Backoff(base=..., cap=...), got {value!r}"
        )
