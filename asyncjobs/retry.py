"""Running a job again: `Retry` (raised by the job) and how long a failed job waits before
its next attempt (`Backoff`)."""

from __future__ import annotations

import dataclasses
import datetime
import random
from collections.abc import Mapping
from typing import Any

from . import validation
from .errors import ConfigurationError

ExceptionTypes = tuple[type[BaseException], ...]


class Retry(Exception):
    """Raise in a job to run it again: after `delay` seconds, else after the task's backoff.

    It spends an attempt, like a failure: `max_attempts` stays a promise that the job ends.
    Raised during the last attempt, the job fails with this as its error.
    """

    def __init__(self, delay: float | datetime.timedelta | None = None, reason: str = "") -> None:
        if isinstance(delay, datetime.timedelta):
            delay = delay.total_seconds()
        if delay is not None and (not validation.is_number(delay) or not delay >= 0):
            raise ConfigurationError(
                f"Retry(delay=...) must be seconds >= 0, a timedelta or None, got {delay!r}"
            )
        self.delay = None if delay is None else float(delay)
        self.reason = reason
        when = "after the task's backoff" if self.delay is None else f"in {self.delay:g}s"
        super().__init__(f"retry requested {when}" + (f": {reason}" if reason else ""))


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


class RetryDelay:
    """The wait before trying again what keeps failing (a lost connection, a statement the
    server refused): `first`, then twice as long each time, at most `most`; `reset()` once
    it works. For asyncjobs' own loops (a job's retries wait by its Backoff)."""

    __slots__ = ("_next", "first", "most")

    def __init__(self, first: float = 0.05, most: float = 2.0) -> None:
        self.first = first
        self.most = most
        self._next = first

    def next(self) -> float:
        """The wait to take now; the one after it is twice as long (at most `most`)."""
        delay = self._next
        self._next = min(delay * 2, self.most)
        return delay

    @property
    def upcoming(self) -> float:
        """What `next()` will return, without moving on."""
        return self._next

    def reset(self) -> None:
        """It worked: the next failure waits `first` again."""
        self._next = self.first


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
