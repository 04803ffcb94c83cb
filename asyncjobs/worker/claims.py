"""Claims: queue rows deleted inside a transaction held open while their jobs run.

The held transaction is the lease. If the worker dies, PostgreSQL rolls it back and the
rows are claimable again at once; if the connection dies, the jobs are interrupted at once,
because by then another worker may be running them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import anyio
import asyncpg

from ..db.connections import close_gently, connect

if TYPE_CHECKING:
    from .attempt import RunningJob

logger = logging.getLogger("asyncjobs.claims")

# Managed PostgreSQL often sets idle_in_transaction_session_timeout; it would kill every
# claim whose job runs longer than that.
# A claim commits only after its jobs' outcomes are committed (durably, elsewhere), so
# losing its commit in a server crash just brings back stale rows, which the next claim
# drops: it need not wait for the WAL flush.
CLAIM_SETTINGS = {
    "idle_in_transaction_session_timeout": "0",
    "statement_timeout": "0",
    "synchronous_commit": "off",
}


# How long a claim's transaction takes more claims (see ClaimConnections.joinable).
JOIN_WINDOW = 0.02


class ClaimConnections:
    """Connections for claim transactions: reused while healthy, opened as needed.

    An idle connection is kept inside a transaction already begun ("COMMIT; BEGIN" in one
    round trip when a claim ends), so a claim costs one round trip: its DELETE. A begun
    transaction that has run nothing holds no snapshot and no transaction id, so it pins
    nothing. Each new connection runs the claim once with a limit of 0, so that its first
    real claim (say, right after a peer's crash) does not pay for parsing and planning.

    While a backlog lasts, claims made within JOIN_WINDOW of each other share one
    transaction, and so one commit: a claim whose jobs are all done that young is parked,
    still open, for the next claim to join, and ended by `end_parked` once its window has
    passed or the fetcher has nothing more to claim. Its rows stay locked meanwhile (other
    workers skip them, as they skip running jobs' rows); a crash brings them back as stale
    rows, which the next claim drops.
    """

    def __init__(
        self,
        dsn: str,
        claim_sql: str,
        queues: Sequence[str],
        limit: int,
        *,
        hold_key: tuple[str, Callable[[], int]],
    ) -> None:
        self._dsn = dsn
        self._claim_sql = claim_sql
        # Each claim session holds the worker's key too (statement `hold_worker_key`), so
        # the key comes free only when every claim of the worker has rolled back.
        self._hold_key = hold_key
        self._queues = list(queues)
        self._limit = limit
        self._idle: list[asyncpg.Connection] = []
        self._open: set[Claim] = set()
        # Whether settled young claims wait for more: while the fetcher's claims come back
        # full (a backlog), and never once the worker stops. An idle worker's claims end
        # at once, so the next job's claim does not meet a commit on its way.
        self.parking = True
        self.backlog = False

    def joinable(self) -> Claim | None:
        """The open claim that new rows should join, if any: one still in its join window
        (parked or running jobs), else, at the limit of open claims, the youngest one with
        jobs running: its transaction stays open anyway while they run, so joining it costs
        no session. (A joined claim commits when its last job is done, so it may live
        longer.)"""
        now = time.monotonic()
        open_to_join = [
            c for c in self._open if not (c.lost or c.joining or c.ending or c.roll_back)
        ]
        young = [c for c in open_to_join if now - c.opened_at < JOIN_WINDOW]
        if young:
            return max(young, key=lambda c: c.opened_at)
        if len(self._open) < self._limit:
            return None
        return max((c for c in open_to_join if c.jobs), key=lambda c: c.opened_at, default=None)

    async def settle(self, claim: Claim) -> None:
        """`claim` has nothing running and nothing being added: park it for the next claim
        to join while it is young, else end it."""
        if (
            self.parking
            and self.backlog
            and not claim.lost
            and not claim.roll_back
            and time.monotonic() - claim.opened_at < JOIN_WINDOW
        ):
            claim.parked = True
            return
        await claim.end()

    def parked_until(self) -> float | None:
        """When the oldest parked claim's window ends (monotonic), or None."""
        times = [c.opened_at + JOIN_WINDOW for c in self._open if c.parked and not c.ending]
        return min(times, default=None)

    async def end_parked(self, *, all_of_them: bool = False) -> None:
        """End the parked claims whose join window has passed (or all of them)."""
        now = time.monotonic()
        due = [
            c
            for c in self._open
            if c.parked
            and c.settled
            and not c.ending
            and (all_of_them or now - c.opened_at >= JOIN_WINDOW)
        ]
        if due:
            async with anyio.create_task_group() as tg:
                for claim in due:
                    tg.start_soon(claim.end_parked)

    async def acquire(self) -> asyncpg.Connection:
        """An open connection inside a transaction that has run nothing yet."""
        while self._idle:
            conn = self._idle.pop()
            if not conn.is_closed() and conn.is_in_transaction():
                return conn
            conn.terminate()
        conn = await connect(self._dsn, settings=CLAIM_SETTINGS)
        try:
            statement, key = self._hold_key
            await conn.fetchval(statement, key())
            await conn.fetch(self._claim_sql, self._queues, 0)
            await conn.execute("BEGIN")
        except BaseException:
            conn.terminate()
            raise
        return conn

    async def end(self, conn: asyncpg.Connection, *, commit: bool) -> None:
        """End the connection's transaction, begin the next one, and keep it for reuse."""
        await conn.execute("COMMIT; BEGIN" if commit else "ROLLBACK; BEGIN")
        self._idle.append(conn)

    def track(self, claim: Claim) -> None:
        """Count `claim`'s rows as held by this worker until it ends or is lost."""
        self._open.add(claim)

    def untrack(self, claim: Claim) -> None:
        """`claim` holds nothing any more."""
        self._open.discard(claim)

    async def close(self) -> None:
        """End parked claims and close every idle connection."""
        self.parking = False
        with anyio.CancelScope(shield=True):
            await self.end_parked(all_of_them=True)
        idle, self._idle = self._idle, []
        for conn in idle:
            await close_gently(conn)


class Claim:
    """One held claim transaction and the jobs started under it.

    It commits (deleting its queue rows for good) once every job's outcome is written,
    and never before: a crash in between then leaves only stale rows, which are dropped.
    """

    def __init__(
        self,
        conn: asyncpg.Connection,
        connections: ClaimConnections,
        entries: Sequence[int],
        on_lost: Callable[[Claim], None],
    ) -> None:
        self.conn = conn
        self.entries = list(entries)
        self.jobs: set[RunningJob] = set()
        self.lost = False
        # While the fetcher claims more rows in this transaction it must not end.
        self.joining = False
        # Settled but left open for the next claim to join (see ClaimConnections).
        self.parked = False
        self.ending = False
        # A job's outcome could not be written at all: end by rolling back, so its row comes
        # back (rows of jobs whose outcomes were written come back stale, and are dropped).
        self.roll_back = False
        self.opened_at = time.monotonic()
        self._connections = connections
        self._on_lost = on_lost
        conn.add_termination_listener(self._terminated)
        connections.track(self)

    def _terminated(self, _conn: object) -> None:
        # Rolled back by the server: the rows are no longer this worker's.
        self._connections.untrack(self)
        if not self.lost:
            self.lost = True
            self._on_lost(self)

    @property
    def settled(self) -> bool:
        """Whether every job of this claim is done with (and no more are being added)."""
        return not self.jobs and not self.joining

    async def settle(self) -> None:
        """Every job is done with: end the claim, or park it (see ClaimConnections)."""
        await self._connections.settle(self)

    async def end_parked(self) -> None:
        """End the claim if it is still parked: the fetcher may have joined it since it was
        found parked, and then its connection is busy with the join's DELETE."""
        if self.parked and self.settled:
            await self.end()

    async def end(self, *, commit: bool = True) -> None:
        """Commit (or roll back) the transaction and give the connection back."""
        if self.ending:
            return
        self.ending = True
        self.parked = False
        self.conn.remove_termination_listener(self._terminated)
        self._connections.untrack(self)
        if self.lost or self.conn.is_closed():
            self.lost = True
            self.conn.terminate()
            return
        try:
            with anyio.CancelScope(shield=True):
                await self._connections.end(self.conn, commit=commit and not self.roll_back)
        except Exception as exc:  # a claim ending badly must never take the worker down
            # The outcomes are written: rows that come back are stale and get dropped.
            logger.warning("claim transaction ended badly: %s", exc)
            self.conn.terminate()
