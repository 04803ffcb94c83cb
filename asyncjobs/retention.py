"""Retention: how long finished jobs are kept, and the worker service that deletes older ones.

Pruning deletes in small batches, each its own short transaction that skips rows someone
else is changing, so it never holds locks for long; one worker at a time does it (a session
advisory lock), every `interval` seconds.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import random

import anyio

from . import validation
from .db.connections import DATABASE_ERRORS
from .db.pool import Pool
from .db.sql import Queries

logger = logging.getLogger("asyncjobs.retention")

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


class Pruner:
    """Deletes finished jobs past their retention, while this worker holds the prune lock."""

    def __init__(self, pool: Pool, sql: Queries, retention: Retention) -> None:
        self._pool = pool
        self._sql = sql
        self._retention = retention
        self.deleted = 0

    async def run(self) -> None:
        """Prune every interval until cancelled; the first round comes at a random point of
        the first interval, so workers started together don't all try at once."""
        delay = random.uniform(0, self._retention.interval)
        while True:
            await anyio.sleep(delay)
            delay = self._retention.interval
            try:
                await self.prune()
            except DATABASE_ERRORS as exc:
                logger.warning("cannot prune finished jobs (next try in %.0fs): %s", delay, exc)

    async def prune(self) -> int | None:
        """One round: delete batches until none is full; None if another worker is at it."""
        succeeded, failed, cancelled = self._retention.ages()
        kept = [age for age in (succeeded, failed, cancelled) if age is not None]
        if not kept:  # every state is kept forever
            return 0
        async with self._pool.acquire() as conn:
            if not await conn.fetchval(self._sql.try_lock_pruning):
                return None
            try:
                total = 0
                bound = await conn.fetchval(self._sql.prune_bound, min(kept))
                while True:
                    batch = await conn.fetch(
                        self._sql.prune_jobs,
                        succeeded,
                        failed,
                        cancelled,
                        self._retention.batch_size,
                        bound,
                    )
                    total += len(batch)
                    self.deleted += len(batch)
                    if len(batch) < self._retention.batch_size:
                        break
                    # Room for other writers between batches.
                    await anyio.sleep(0.01)
            finally:
                # The pool gives connections back without a reset (see pool.py), so a
                # lock left behind would stop every worker's pruning: if the unlock does not
                # happen, the session goes, and the lock with it.
                unlocked = False
                with anyio.move_on_after(2, shield=True):
                    try:
                        await conn.fetchval(self._sql.unlock_pruning)
                        unlocked = True
                    except DATABASE_ERRORS:
                        pass
                if not unlocked:
                    conn.terminate()
        if total:
            logger.info("pruned %s finished jobs (kept: %s)", total, self._retention.describe())
        return total
