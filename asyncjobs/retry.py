"""How long a failed job waits before its next attempt."""

from __future__ import annotations

import dataclasses
import random

from .errors import ConfigurationError


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
        if self.base < 0 or self.cap < 0:
            raise ConfigurationError(f"Backoff needs base >= 0 and cap >= 0, got {self}")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        raw = min(self.cap, self.base * 2 ** min(max(attempt - 1, 0), 62))
        return random.uniform(raw / 2, raw) if self.jitter else raw
