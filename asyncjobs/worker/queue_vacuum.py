"""The queue vacuum: the worker service that keeps the `queue` table small under churn.

Every claim deletes the rows it takes from `queue`, and every enqueue inserts at the end of
its index, so the dead rows gather at the very start of the range each claim reads: until
they are vacuumed, every claim steps over all of them. Autovacuum visits a database at most
once a minute (`autovacuum_naptime`), and a worker draining thousands of jobs a second
leaves hundreds of thousands of dead rows in that time: the claim statement slows by half
or more before the next visit, then recovers (benchmarks/README.md, 2026-11-30, "the queue
vacuum"). A `VACUUM` of the table takes a few tens of milliseconds, blocks no claim or
enqueue, and brings it back.

So each worker vacuums `queue` itself once it has claimed `every_rows` rows since its last
vacuum, at most every `interval` seconds: a worker that claims little never does. It never
truncates the table (that takes an exclusive lock, which would hold up claims). It skips
the table if another vacuum (autovacuum, or another worker's) is at it; a role that doesn't
own the table can't vacuum it, and PostgreSQL then only warns (autovacuum stays in charge).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import anyio

from ..db.connections import DATABASE_ERRORS
from ..db.pool import Pool
from ..db.sql import Queries

logger = logging.getLogger("asyncjobs.worker")

# Rows claimed between vacuums: about as many dead rows as slow the claim by a tenth.
EVERY_ROWS = 20_000
INTERVAL = 5.0


class QueueVacuum:
    """Vacuums the queue table when this worker's claims left enough dead rows in it."""

    def __init__(
        self,
        pool: Pool,
        sql: Queries,
        claimed: Callable[[], int],
        *,
        every_rows: int = EVERY_ROWS,
        interval: float = INTERVAL,
    ) -> None:
        self._pool = pool
        self._sql = sql
        self._claimed = claimed
        self._every_rows = every_rows
        self._interval = interval
        self.vacuums = 0

    async def run(self) -> None:
        """Check every interval until cancelled."""
        last = self._claimed()
        while True:
            await anyio.sleep(self._interval)
            now = self._claimed()
            if now - last < self._every_rows:
                continue
            last = now
            try:
                await self._pool.execute(self._sql.vacuum_queue)
                self.vacuums += 1
            except DATABASE_ERRORS as exc:
                logger.warning("cannot vacuum the queue table (autovacuum will): %s", exc)
