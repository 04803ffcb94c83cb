"""The pruner: the worker service that deletes finished jobs past their retention.

Pruning deletes in small batches, each its own short transaction that skips rows someone
else is changing, so it never holds locks for long; one worker at a time does it (a session
advisory lock), every `interval` seconds.
"""

from __future__ import annotations

import logging
import random

import anyio

from ..db.connections import DATABASE_ERRORS
from ..db.pool import Pool
from ..db.sql import Queries
from ..retention import Retention

logger = logging.getLogger("asyncjobs.retention")


class Pruner:
    """Deletes finished jobs past their retention, while this worker holds the prune lock."""

    def __init__(self, pool: Pool, sql: Queries, retention: Retention) -> None:
        self._pool = pool
        self._sql = sql
        self._retention = retention

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
