"""Watching the next worker: a dead worker's jobs run again at once, whoever died.

Workers form a ring by key (see lease.py): each one waits, on a session of its own that
holds no lock, for the exclusive lock on the next worker's key. PostgreSQL grants it the
moment the last session of that worker ends, so a death is noticed without polling and
without a timeout; the watcher then rescues the dead worker (statement `rescue_worker`:
its handed-off jobs are queued again and every worker of its queues is woken, since its
claims' rows are back too) and moves on to the next key, so several deaths at once are
all noticed. Only a waiter that holds no lock of its own can't form a deadlock cycle with
the others.

A statement waiting for a lock holds a snapshot, which would pin the vacuum horizon for as
long as the watched worker lives: the wait is re-armed every REARM seconds (lock_timeout).
"""

from __future__ import annotations

import bisect
import logging
import uuid
from collections.abc import Callable, Sequence

import anyio
import asyncpg

from ..db.connections import DATABASE_ERRORS, close_gently, connect
from ..db.sql import Queries
from ..hooks import JobRun
from ..retry import RetryDelay
from .lost import rescued_runs

logger = logging.getLogger("asyncjobs.worker")

REARM = 0.5
# A waiting exclusive request also holds up later shared ones on the same key: while a
# peer waits on this worker's key, a claim session this worker opens waits too (for at
# most REARM). And a backend waiting for a lock doesn't read its socket, so the wait of a
# watcher whose worker died would linger until its timeout, still holding up the watched
# worker's new sessions: the server checks the client every 100 ms instead
# (client_connection_check_interval, PostgreSQL 14+).
WATCH_SETTINGS = {
    "lock_timeout": f"{int(REARM * 1000)}ms",
    "client_connection_check_interval": "100ms",
}


def next_key(keys: Sequence[int], own: int) -> int | None:
    """The key this worker watches: the next one after `own` in the ring, or None when
    `own` is alone."""
    ring = sorted(set(keys))
    if not ring:
        return None
    at = bisect.bisect_right(ring, own)
    key = ring[at % len(ring)]
    return None if key == own else key


class Watcher:
    """Watches the next worker's key until cancelled."""

    def __init__(
        self,
        dsn: str,
        sql: Queries,
        *,
        key: Callable[[], int],
        on_rescued: Callable[[], None],
        worker_id: uuid.UUID,
        on_lost: Callable[[list[JobRun]], None],
    ) -> None:
        self._dsn = dsn
        self._sql = sql
        self._key = key
        self._on_rescued = on_rescued
        self._worker_id = worker_id
        self._on_lost = on_lost
        self._changed = anyio.Event()
        self.watching: int | None = None

    def ring_changed(self) -> None:
        """A worker joined or left: the next key may be another one."""
        self._changed.set()

    async def run(self) -> None:
        # Never reset: a watcher that keeps failing waits up to 2 s between tries.
        retry = RetryDelay()
        while True:
            try:
                conn = await connect(self._dsn, settings=WATCH_SETTINGS)
            except DATABASE_ERRORS as exc:
                logger.warning(
                    "watcher cannot connect (retrying in %.2fs): %s", retry.upcoming, exc
                )
            else:
                try:
                    await self._watch(conn)
                except DATABASE_ERRORS as exc:
                    logger.warning("watcher failed (retrying in %.2fs): %s", retry.upcoming, exc)
                finally:
                    self.watching = None
                    await close_gently(conn)
            await anyio.sleep(retry.next())

    async def _watch(self, conn: asyncpg.Connection) -> None:
        # Whoever died while nobody watched (this worker is new, or its session was lost).
        for key in await conn.fetchval(self._sql.gone_workers, self._key()) or []:
            try:
                await conn.fetchval(self._sql.watch_worker, key)
            except asyncpg.LockNotAvailableError:
                continue  # back already (a reconnect), or another watcher is rescuing it
            await self._rescue(conn, key)
        while True:
            self._changed = anyio.Event()
            keys = await conn.fetchval(self._sql.worker_keys) or []
            self.watching = next_key(keys, self._key())
            if self.watching is None:
                await self._changed.wait()
                continue
            while not self._changed.is_set():
                try:
                    await conn.fetchval(self._sql.watch_worker, self.watching)
                except asyncpg.LockNotAvailableError:
                    continue
                await self._rescue(conn, self.watching)
                break

    async def _rescue(self, conn: asyncpg.Connection, key: int) -> None:
        row = await conn.fetchrow(self._sql.rescue_worker, key)
        assert row is not None
        lost = row["lost"]
        logger.warning(
            "a worker (key %s) is gone: %s of its handed-off jobs queued again, its "
            "claimed ones are back in the queue",
            key,
            sum(1 for attempt in lost if not attempt["gave_up"]),
        )
        self._on_rescued()
        if lost:
            self._on_lost(rescued_runs(lost, self._worker_id))
