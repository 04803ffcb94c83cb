"""The worker's row in `workers`: registered on start, beaten, removed on a clean exit."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable, Sequence

import anyio

from ..db.connections import DATABASE_ERRORS
from ..db.pool import Pool
from ..db.sql import Queries
from ..hooks import JobRun
from .lost import rescued_runs

logger = logging.getLogger("asyncjobs.heartbeat")


class Heartbeat:
    """Keeps one worker's row fresh and notices a stop broadcast its listener missed."""

    def __init__(
        self,
        *,
        sql: Queries,
        pool: Pool,
        worker_id: uuid.UUID,
        queues: Sequence[str],
        concurrency: int,
        interval: float,
        running: Callable[[], int],
        stop: Callable[[object], None],
        on_lost: Callable[[list[JobRun]], None],
    ) -> None:
        self._sql = sql
        self._pool = pool
        self._worker_id = worker_id
        self._queues = list(queues)
        self._concurrency = concurrency
        self._interval = interval
        self._running = running
        self._stop = stop
        self._on_lost = on_lost
        self._key: int | None = None

    async def register(self, key: int | None = None) -> None:
        """Insert (or update) this worker's row with its key (statement `register_worker`);
        `key`: a new one, after the lease session took it."""
        if key is not None:
            self._key = key
        await self._pool.execute(
            self._sql.register_worker,
            self._worker_id,
            socket.gethostname(),
            os.getpid(),
            self._queues,
            self._concurrency,
            self._key,
        )

    async def unregister(self) -> None:
        """Remove this worker's row; best effort, the row ages out otherwise."""
        with anyio.move_on_after(2, shield=True):
            try:
                await self._pool.execute(self._sql.unregister_worker, self._worker_id)
            except DATABASE_ERRORS as exc:
                logger.warning("cannot remove worker row: %s", exc)

    async def beat(self) -> None:
        """Refresh the row; stop if a stop broadcast flagged it (statement `heartbeat`)."""
        row = await self._pool.fetchrow(self._sql.heartbeat, self._worker_id, self._running())
        if row is None:
            # Pruned as dead after a long stall (or deleted by hand): exist again.
            await self.register()
        elif row["stop_requested"]:
            self._stop(row["stop_grace"] or 0.0)

    async def prune(self) -> None:
        """Rescue workers long silent whose key is free (statement `prune_workers`), and
        report the attempts they lost."""
        row = await self._pool.fetchrow(self._sql.prune_workers, max(60.0, 6 * self._interval))
        lost = row["lost"] if row is not None else None
        if lost:
            self._on_lost(rescued_runs(lost, self._worker_id))

    async def run(self) -> None:
        """Beat every interval until cancelled; prune rows of workers long dead."""
        while True:
            await anyio.sleep(self._interval)
            try:
                await self.beat()
                await self.prune()
            except DATABASE_ERRORS as exc:
                logger.warning("heartbeat failed: %s", exc)
