"""The worker's lease session: it holds the worker's key for as long as the worker lives.

Every session a worker holds work on (this one and its claim sessions) holds the key's
advisory lock in shared mode, so the key comes free only once all of them have ended: that
is how a peer watching it (see watcher.py) learns, at once, that the worker is gone and
its claims have rolled back. The session lives outside any pool: asyncpg's pool reset
runs pg_advisory_unlock_all().
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

import anyio
import asyncpg

from ..db.connections import DATABASE_ERRORS, close_gently, connect
from ..db.parameters import HandOff
from ..db.sql import Queries
from ..errors import ConnectionFailed
from ..retry import RetryDelay

if TYPE_CHECKING:
    from .attempt import RunningJob

logger = logging.getLogger("asyncjobs.worker")

# The lease session runs short statements only and is idle in between, never in a
# transaction.
LEASE_SETTINGS = {"idle_in_transaction_session_timeout": "0", "statement_timeout": "0"}
# How often the session is checked, and how long an answer may take: together well within
# GIVE_UP_AFTER (see db/connections.py), so the worker gives the key up before the server
# does.
PING = 1.0
PING_TIMEOUT = 2.0


class LeaseSession:
    """Holds this worker's key; reconnects (keeping the key) when the session is lost."""

    def __init__(
        self,
        dsn: str,
        sql: Queries,
        *,
        on_key: Callable[[int], Awaitable[None]],
        on_lost: Callable[[], None],
    ) -> None:
        self._dsn = dsn
        self._sql = sql
        # Called with the key once the session holds it (at open and after each
        # reconnect): the worker (re)registers its row with it.
        self._on_key = on_key
        # Called when the session is lost: the jobs handed off to the key stop at once
        # (the key may come free, and a peer then runs them again).
        self._on_lost = on_lost
        self._conn: asyncpg.Connection | None = None
        self._lost = anyio.Event()
        # One statement at a time on the session: the ping and the hand-offs.
        self._busy: anyio.Lock | None = None
        self.key: int | None = None

    async def open(self) -> int:
        """Connect and take a new key (statement `take_worker_key`); return it."""
        await self._connect()
        assert self.key is not None
        return self.key

    async def _connect(self) -> None:
        if self._busy is None:
            self._busy = anyio.Lock()
        conn = await connect(self._dsn, settings=LEASE_SETTINGS)
        try:
            row = await conn.fetchrow(self._sql.take_worker_key, self.key)
            assert row is not None
            self._lost = anyio.Event()
            conn.add_termination_listener(lambda _conn, lost=self._lost: lost.set())
        except BaseException:
            conn.terminate()
            raise
        self._conn = conn
        self.key = row["key"]
        await self._on_key(self.key)

    async def _ping(self) -> None:
        """Until the session is lost: check it every PING seconds, and give it up (which
        interrupts the handed-off jobs) when it doesn't answer within PING_TIMEOUT. Over a
        path that is cut but not closed (a partition, a stalled proxy) nothing else would
        notice before the server lets the key go."""
        while not self._lost.is_set():
            with anyio.move_on_after(PING):
                await self._lost.wait()
            conn = self._conn
            if conn is None or self._lost.is_set():
                return
            assert self._busy is not None
            try:
                with anyio.fail_after(PING_TIMEOUT):
                    async with self._busy:
                        await conn.fetchval("SELECT 1")
            except DATABASE_ERRORS as exc:  # a timeout too
                logger.warning("lease session does not answer (%s): giving it up", exc or "timeout")
                conn.terminate()
                self._lost.set()

    async def run(self) -> None:
        """Keep the session up until cancelled: a lost one is replaced with the same key."""
        retry = RetryDelay()
        while True:
            await self._ping()
            logger.warning("lease session lost: interrupting handed-off jobs; reconnecting")
            self._conn = None
            self._on_lost()
            while True:
                try:
                    await self._connect()
                    retry.reset()
                    break
                except DATABASE_ERRORS as exc:
                    delay = retry.next()
                    logger.warning(
                        "lease session cannot reconnect (retrying in %.2fs): %s", delay, exc
                    )
                    await anyio.sleep(delay)

    async def hand_off(self, jobs: Sequence[RunningJob]) -> set[int]:
        """Move these claimed jobs' attempts to the key (statement `hand_off`); return the
        ids of those moved."""
        conn = self._conn
        if conn is None or conn.is_closed():
            raise ConnectionFailed("the lease session is reconnecting")
        record = HandOff(
            job_ids=[job.id for job in jobs],
            entries=[job.entry for job in jobs],
            attempts=[job.attempt for job in jobs],
            key=self.key,
        )
        assert self._busy is not None
        try:
            with anyio.fail_after(PING_TIMEOUT):
                async with self._busy:
                    rows = await conn.fetch(self._sql.hand_off, *record)
        except TimeoutError:
            # Whether it took effect is unknown, and the session can't be trusted.
            conn.terminate()
            self._lost.set()
            raise ConnectionFailed("the lease session does not answer") from None
        return {row["id"] for row in rows}

    async def close(self) -> None:
        """End the session: the key comes free once the claim sessions have ended too."""
        conn, self._conn = self._conn, None
        if conn is not None:
            await close_gently(conn)
