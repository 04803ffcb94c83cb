"""Retention: how long finished jobs are kept (the worker's pruner deletes older ones, see
worker/pruner.py)."""

from __future__ import annotations

import dataclasses
import datetime

from . import validation

DAY = 86400.0
MAX_AGE = 1000 * 365.25 * DAY
Age = float | datetime.timedelta | None


@dataclasses.dataclass(frozen=True, slots=True)
class Retention:
    """How long finished jobs (and their results) are kept, by final state.

    Ages are seconds or timedeltas; None keeps those jobs forever. Workers prune every
    `interval` seconds, `batch_size` jobs per statement.
    """

    succeeded: Age = DAY
    failed: Age = 7 * DAY
    cancelled: Age = DAY
    interval: float = 60.0
    batch_size: int = 1000

    def __post_init__(self) -> None:
        for name in ("succeeded", "failed", "cancelled"):
            value = getattr(self, name)
            if isinstance(value, datetime.timedelta):
                value = value.total_seconds()
                object.__setattr__(self, name, value)
            if value is not None:
                # PostgreSQL's intervals end near 178 million years; None is forever.
                validation.seconds(f"Retention {name}", value, most=MAX_AGE)
        validation.seconds("Retention interval", self.interval, zero=False, most=MAX_AGE)
        validation.integer("Retention batch_size", self.batch_size, 1, validation.INT32)

    def ages(self) -> tuple[float | None, float | None, float | None]:
        """Seconds to keep succeeded, failed and cancelled jobs (None: forever)."""
        return _seconds(self.succeeded), _seconds(self.failed), _seconds(self.cancelled)

    def describe(self) -> str:
        """For messages: 'succeeded 1d, failed 7d, cancelled 1d'."""
        parts = zip(("succeeded", "failed", "cancelled"), self.ages(), strict=True)
        return ", ".join(f"{name} {format_age(age)}" for name, age in parts)


def _seconds(value: Age) -> float | None:
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    return None if value is None else float(value)


def format_age(seconds: float | None) -> str:
    """'forever', '7d', '12h', '30m' or '90s'."""
    if seconds is None:
        return "forever"
    for unit, size in (("d", DAY), ("h", 3600.0), ("m", 60.0)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"
