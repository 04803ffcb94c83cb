"""Claims: queue rows deleted inside a transaction held open while their jobs run.

The held transaction is the lease. If the worker dies, PostgreSQL rolls it back and the
rows are claimable again at once; if the connection dies, the jobs are interrupted at once,
because by then another worker may be running them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio
import asyncpg

from .connections import connect

if TYPE_CHECKING:
    from .job_runner import RunningJob

logger = logging.getLogger("asyncjobs.claims")

# Managed PostgreSQL often sets idle_in_transaction_session_timeout; it would kill every
# claim whose job runs longer than that.
CLAIM_SETTINGS = {"idle_in_transaction_session_timeout": "0", "statement_timeout": "0"}
# The watcher's lock wait may last as long as the job it waits on.
WATCH_SETTINGS = {**CLAIM_SETTINGS, "lock_timeout": "0"}


class ClaimConnections:
    """Connections for claim transactions: reused while healthy, opened as needed."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._idle: list[asyncpg.Connection] = []
        self.opened = 0

    async def acquire(self) -> asyncpg.Connection:
        """An open connection with no transaction."""
        while self._idle:
            conn = self._idle.pop()
            if not conn.is_closed():
                return conn
        self.opened += 1
        return await connect(self._dsn, settings=CLAIM_SETTINGS)

    async def acquire_watcher(self, settings: dict[str, str]) -> asyncpg.Connection:
        """A connection for the fetcher's lock wait (see Fetcher._watch)."""
        self.opened += 1
        return await connect(self._dsn, settings=settings)

    def release(self, conn: asyncpg.Connection) -> None:
        """Give back a connection whose transaction has ended."""
        if not conn.is_closed() and not conn.is_in_transaction():
            self._idle.append(conn)
        else:
            conn.terminate()

    async def close(self) -> None:
        """Close every idle connection."""
        idle, self._idle = self._idle, []
        with anyio.CancelScope(shield=True):
            for conn in idle:
                try:
                    await conn.close(timeout=2)
                except (OSError, asyncpg.InterfaceError, TimeoutError):
                    conn.terminate()


class Claim:
    """One held claim transaction and the jobs started under it.

    It commits (deleting its queue rows for good) once every job's outcome is written,
    and never before: a crash in between then leaves only stale rows, which are dropped.
    """

    def __init__(
        self,
        conn: asyncpg.Connection,
        connections: ClaimConnections,
        on_lost: Callable[[Claim], None],
    ) -> None:
        self.conn = conn
        self.jobs: set[RunningJob] = set()
        self.lost = False
        self._connections = connections
        self._on_lost = on_lost
        conn.add_termination_listener(self._terminated)

    def _terminated(self, _conn: object) -> None:
        if not self.lost:
            self.lost = True
            self._on_lost(self)

    @property
    def settled(self) -> bool:
        """Whether every job of this claim is done with."""
        return not self.jobs

    async def end(self, *, commit: bool = True) -> None:
        """Commit (or roll back) the transaction and give the connection back."""
        self.conn.remove_termination_listener(self._terminated)
        if self.lost or self.conn.is_closed():
            self.lost = True
            self.conn.terminate()
            return
        try:
            with anyio.CancelScope(shield=True):
                await self.conn.execute("COMMIT" if commit else "ROLLBACK")
        except Exception as exc:  # a claim ending badly must never take the worker down
            # The outcomes are written: rows that come back are stale and get dropped.
            logger.warning("claim transaction ended badly: %s", exc)
            self.conn.terminate()
            return
        self._connections.release(self.conn)
