"""Exceptions a job raises to decide its own outcome: run again later, or stop for good."""

from __future__ import annotations

import datetime

from .errors import ConfigurationError


class Retry(Exception):
    """Raise in a job to run it again: after `delay` seconds, else after the task's backoff.

    It spends an attempt, like a failure: `max_attempts` stays a promise that the job ends.
    Raised during the last attempt, the job fails with this as its error.
    """

    def __init__(self, delay: float | datetime.timedelta | None = None, reason: str = "") -> None:
        if isinstance(delay, datetime.timedelta):
            delay = delay.total_seconds()
        if delay is not None and (
            not isinstance(delay, (int, float)) or isinstance(delay, bool) or not delay >= 0
        ):
            raise ConfigurationError(
                f"Retry(delay=...) must be seconds >= 0, a timedelta or None, got {delay!r}"
            )
        self.delay = None if delay is None else float(delay)
        self.reason = reason
        when = "after the task's backoff" if self.delay is None else f"in {self.delay:g}s"
        super().__init__(f"retry requested {when}" + (f": {reason}" if reason else ""))


class Cancel(Exception):
    """Raise in a job to stop it for good: it ends `cancelled`, with `reason` recorded."""

    def __init__(self, reason: str = "") -> None:
        self.reason = reason
        super().__init__(reason or "cancelled by the job itself")
