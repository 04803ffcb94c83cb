"""Claims: queue rows deleted inside a transaction held open while their jobs run.

The held transaction is the lease. If the worker dies, PostgreSQL rolls it back and the
rows are claimable again at once; if the connection dies, the jobs are interrupted at once,
because by then another worker may be running them.

A claim's life is a small state machine owned by this module: `ClaimState` lists the states
and the rules the fetcher, the recorder, the hand-offs and the worker rely on; the
transitions are `Claim`'s methods, and each checks that it is allowed where the claim is.
"""

from __future__ import annotations

import enum
import logging
import os
import time
from collections.abc import Callable, Collection, Sequence, Set
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

# Set to 1 (the test suite does) to make an illegal transition raise IllegalTransition
# instead of being logged as the bug it is.
STRICT_ENV = "ASYNCJOBS_STRICT_STATES"


class ClaimState(enum.Enum):
    """Where a claim is in its life. The rules:

    - OPEN: its DELETE runs on a connection of its own; it holds no rows yet. Found nothing,
      it rolls back and ends. Lost here, nothing is told: no job was ever started under it.
    - RUNNING: it holds rows, and their jobs are being started (the recorder writes the
      start while the next claim's DELETE runs) or run. It commits only when no job is
      left and no start is in flight ("settled"): every outcome is then written and
      committed elsewhere, so a crash in between brings back only stale rows.
    - JOINING: as RUNNING, while the fetcher claims more rows inside its transaction (a
      young claim while a backlog lasts, or the youngest busy one at the limit of claim
      sessions) and until their start is written. Its connection is busy with that DELETE,
      so it can't end, and nothing else joins it meanwhile. Only a RUNNING or PARKED claim
      that is neither lost nor doomed to roll back may be joined.
    - PARKED: settled while young (JOIN_WINDOW) during a backlog: left open, still holding
      its finished jobs' rows, for the next claim to join and so share one commit. Those
      rows are stale but harmless: locked, other workers skip them as they skip running
      jobs' rows; rolled back by a crash, they come back pointing at jobs that are
      finished, and the next claim's start refuses them and drops them. It ends once its
      window has passed or the fetcher finds nothing more to claim (or the worker stops).
    - ENDING: its COMMIT (or ROLLBACK) runs; then ENDED, its connection idle for the next
      claim (or closed, if ending went badly: its outcomes are written, so rows that come
      back are stale).
    - LOST: its session is gone (the server rolled it back) or given up (terminated by the
      worker: a start, a join or a hand-off that failed, or outcomes a forced stop could not
      write). Its rows are back in the queue, and another worker may already run its jobs:
      they are interrupted at once (`on_lost`), and their outcomes are not written.

    Transitions (each a method of Claim, checked):

        OPEN     -> RUNNING   rows_claimed          OPEN    -> ENDED   nothing_claimed
        RUNNING  -> JOINING   begin_join            PARKED  -> JOINING begin_join
        JOINING  -> RUNNING   start_done(joined=True), nothing_claimed
        RUNNING  -> PARKED | ENDING -> ENDED        when settled (start_done, job_done,
                                                    hand_off)
        PARKED   -> ENDING -> ENDED                 end_if_parked
        any but ENDING, ENDED -> LOST               give_up, or the session's loss
    """

    OPEN = "open"
    RUNNING = "running"
    JOINING = "joining"
    PARKED = "parked"
    ENDING = "ending"
    ENDED = "ended"
    LOST = "lost"


OPEN, RUNNING, JOINING, PARKED, ENDING, ENDED, LOST = ClaimState
# Where a claim's rows are held and its jobs may be started, run and finished.
_HOLDING = frozenset({RUNNING, JOINING})
# Where jobs may still be started, run and finished: a lost claim's jobs are launched (and
# interrupted at once) and finish as any others, only their outcomes are not written.
_WITH_JOBS = frozenset({RUNNING, JOINING, LOST})


class IllegalTransition(RuntimeError):
    """A claim was asked to change in a way its state does not allow: a bug in asyncjobs."""


class ClaimConnections:
    """Connections for claim transactions: reused while healthy, opened as needed.

    An idle connection is kept inside a transaction already begun ("COMMIT; BEGIN" in one
    round trip when a claim ends), so a claim costs one round trip: its DELETE. A begun
    transaction that has run nothing holds no snapshot and no transaction id, so it pins
    nothing. Each new connection runs the claim once with a limit of 0, so that its first
    real claim (say, right after a peer's crash) does not pay for parsing and planning.

    While a backlog lasts, claims made within JOIN_WINDOW of each other share one
    transaction, and so one commit: a claim whose jobs are all done that young is parked
    (see ClaimState), and ended by `end_parked` once its window has passed or the fetcher
    has nothing more to claim.
    """

    def __init__(
        self,
        dsn: str,
        claim_sql: str,
        queues: Sequence[str],
        limit: int,
        *,
        hold_key: tuple[str, Callable[[], int]],
        strict: bool | None = None,
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
        # full (a backlog, set by the fetcher), and never once the worker stops. An idle
        # worker's claims end at once, so the next job's claim does not meet a commit on its
        # way.
        self._parking = True
        self.backlog = False
        self.strict = os.environ.get(STRICT_ENV) == "1" if strict is None else strict

    async def open(self, on_lost: Callable[[Claim], None]) -> Claim:
        """A new claim (OPEN) on a connection of its own; `on_lost` is called if it is lost
        once it holds rows."""
        return Claim(await self.acquire(), self, on_lost)

    def joinable(self) -> Claim | None:
        """The open claim that new rows should join, if any: one still in its join window
        (parked or running jobs), else, at the limit of open claims, the youngest one with
        jobs running: its transaction stays open anyway while they run, so joining it costs
        no session. (A joined claim commits when its last job is done, so it may live
        longer.)"""
        now = time.monotonic()
        open_to_join = [c for c in self._open if c.joinable]
        young = [c for c in open_to_join if now - c.opened_at < JOIN_WINDOW]
        if young:
            return max(young, key=lambda c: c.opened_at)
        if len(self._open) < self._limit:
            return None
        return max((c for c in open_to_join if c.jobs), key=lambda c: c.opened_at, default=None)

    def parks(self, claim: Claim) -> bool:
        """Whether `claim`, just settled, should park rather than end."""
        return self._parking and self.backlog and time.monotonic() - claim.opened_at < JOIN_WINDOW

    def stop_parking(self) -> None:
        """Nothing will join a parked claim any more (the worker stops): claims end as soon
        as they are settled."""
        self._parking = False

    def parked_until(self) -> float | None:
        """When the oldest parked claim's window ends (monotonic), or None."""
        times = [c.opened_at + JOIN_WINDOW for c in self._open if c.state is PARKED]
        return min(times, default=None)

    async def end_parked(self, *, all_of_them: bool = False) -> None:
        """End the parked claims whose join window has passed (or all of them)."""
        now = time.monotonic()
        due = [
            c
            for c in self._open
            if c.state is PARKED and (all_of_them or now - c.opened_at >= JOIN_WINDOW)
        ]
        if due:
            async with anyio.create_task_group() as tg:
                for claim in due:
                    tg.start_soon(claim.end_if_parked)

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
        """Count `claim` as open on this worker until it ends or is lost."""
        self._open.add(claim)

    def untrack(self, claim: Claim) -> None:
        """`claim` holds nothing any more."""
        self._open.discard(claim)

    async def close(self, keep: Collection[Claim] = ()) -> None:
        """End parked claims, give up any other claim still open but those in `keep`, and
        close every idle connection.

        After a worker's orderly stop no claim is open but parked ones. After a
        cancellation from outside, claims of jobs stopped without their outcome written
        still are: given up, they roll back and their rows come back (their attempts
        counted as lost). `keep`: claims that must stay held until the process exits (those
        of abandoned sync threads, whose code may still run)."""
        self._parking = False
        with anyio.CancelScope(shield=True):
            await self.end_parked(all_of_them=True)
        for claim in list(self._open):
            if claim not in keep and claim.state in (OPEN, RUNNING, JOINING):
                claim.give_up()
        idle, self._idle = self._idle, []
        for conn in idle:
            await close_gently(conn)


class Claim:
    """One held claim transaction and the jobs started under it (see ClaimState).

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
        self.state = OPEN
        self.opened_at = time.monotonic()
        self._jobs: set[RunningJob] = set()
        # Starts in flight: claimed rows whose jobs are not launched yet.
        self._starts = 0
        # A job's outcome could not be written at all: end by rolling back, so its row comes
        # back (rows of jobs whose outcomes were written come back stale, and are dropped).
        # A flag, not a state: read when the claim ends.
        self._roll_back = False
        self._connections = connections
        self._on_lost = on_lost
        conn.add_termination_listener(self._terminated)
        connections.track(self)

    def __repr__(self) -> str:
        return f"<Claim {self.state.value} jobs={len(self._jobs)} starts={self._starts}>"

    # -- what others read ---------------------------------------------------------------

    @property
    def jobs(self) -> Set[RunningJob]:
        """The jobs run under this claim (started, not yet finished or handed off)."""
        return self._jobs

    @property
    def lost(self) -> bool:
        """Whether its rows are back in the queue without it (see ClaimState.LOST)."""
        return self.state is LOST

    @property
    def ending(self) -> bool:
        """Whether it commits (or rolls back) by itself now, or has: every outcome of its
        jobs is written (see ClaimState.ENDING)."""
        return self.state is ENDING or self.state is ENDED

    @property
    def settled(self) -> bool:
        """Whether it holds rows but nothing runs or starts under it any more."""
        return self.state is RUNNING and not self._jobs and not self._starts

    @property
    def joinable(self) -> bool:
        """Whether more rows may be claimed into its transaction now."""
        return (self.state is RUNNING or self.state is PARKED) and not self._roll_back

    # -- transitions --------------------------------------------------------------------

    def rows_claimed(self) -> None:
        """Its DELETE (or a join's) returned rows, whose start is written next. (Lost while
        the DELETE returned, it starts them all the same: they are launched, and stopped at
        once, as for a claim lost during its start.)"""
        self._check("rows_claimed", OPEN, JOINING, LOST)
        if self.state is OPEN:
            self.state = RUNNING
        self._starts += 1

    async def nothing_claimed(self) -> None:
        """Its DELETE found nothing: an OPEN claim rolls back; a join ends."""
        self._check("nothing_claimed", OPEN, JOINING, LOST)
        if self.state is OPEN:
            await self._end(commit=False)
        elif self.state is JOINING:
            self.state = RUNNING
            await self._settle_if_done()

    def begin_join(self) -> None:
        """The fetcher claims more rows inside this transaction (see ClaimState.JOINING)."""
        if not self.joinable:
            self._illegal("begin_join")
        self.state = JOINING

    def job_started(self, job: RunningJob) -> None:
        """`job`, of rows claimed here, is launched."""
        self._check("job_started", *_WITH_JOBS)
        if not self._starts:
            self._illegal("job_started")
        self._jobs.add(job)

    async def start_done(self, *, joined: bool) -> None:
        """A start is written and its jobs launched (`joined`: the start of a join's rows)."""
        if joined:
            self._check("start_done(joined)", JOINING, LOST)
        else:
            self._check("start_done", *_WITH_JOBS)
        self._starts -= 1
        if joined and self.state is JOINING:
            self.state = RUNNING
        await self._settle_if_done()

    async def start_failed(self, *, joined: bool) -> None:
        """A start could not be written: nothing of it ran, and its rows must come back. A
        claim with nothing else in it rolls back; one with other jobs, other starts or a
        join in flight is given up (lost: its other jobs stop, as for a dead connection)."""
        if joined:
            self._check("start_failed(joined)", JOINING, LOST)
        else:
            self._check("start_failed", *_WITH_JOBS)
        self._starts -= 1
        if self.state is LOST:
            return
        if not joined and self.state is RUNNING and not self._jobs and not self._starts:
            await self._end(commit=False)
        else:
            self.give_up()

    async def job_done(self, job: RunningJob) -> None:
        """`job`'s outcome is written (or must not be): the claim ends once it is settled."""
        self._check("job_done", *_WITH_JOBS)
        self._remove(job)
        await self._settle_if_done()

    async def hand_off(self, job: RunningJob) -> None:
        """`job`'s attempt belongs to the worker's key now (handoff.py): it leaves the
        claim, which may end before it does."""
        self._check("hand_off", *_WITH_JOBS)
        self._remove(job)
        job.handed_off = True
        await self._settle_if_done()

    def must_roll_back(self) -> None:
        """A job's outcome (or the failure of a job whose start was refused) can't be
        stored: end by rolling back, so that its row comes back and the job runs again (see
        Recorder._isolate, Fetcher._fail_unstartable). Nothing joins the claim now."""
        self._roll_back = True

    async def end_if_parked(self) -> None:
        """End the claim if it is still parked: the fetcher may have joined it since it was
        found parked, and then its connection is busy with the join's DELETE."""
        if self.state is PARKED:
            await self._end(commit=True)

    def give_up(self) -> None:
        """Terminate its session, so that the server rolls it back: its rows come back and
        its jobs are interrupted (on_lost). Nothing, if it is lost already."""
        self._check("give_up", OPEN, RUNNING, JOINING, PARKED, LOST)
        if self.state is LOST:
            return
        self.conn.remove_termination_listener(self._terminated)
        self.conn.terminate()
        self._lose()

    # -- inside ---------------------------------------------------------------------

    def _terminated(self, _conn: object) -> None:
        # The session is gone, so the server rolled the claim back. Called soon after, by
        # asyncpg: by then the claim may have ended (or been given up), and this means
        # nothing.
        if self.state in (OPEN, RUNNING, JOINING, PARKED):
            self._lose()

    def _lose(self) -> None:
        held = self.state is not OPEN
        self.state = LOST
        self._connections.untrack(self)
        if held:
            self._on_lost(self)

    def _remove(self, job: RunningJob) -> None:
        if job not in self._jobs:
            self._illegal(f"finishing a job not under it ({job.id})")
        self._jobs.discard(job)

    async def _settle_if_done(self) -> None:
        """Settled: park (see ClaimConnections.parks) or end."""
        if not self.settled:
            return
        if not self._roll_back and self._connections.parks(self):
            self.state = PARKED
            return
        await self._end(commit=not self._roll_back)

    async def _end(self, *, commit: bool) -> None:
        """Commit (or roll back) the transaction and give the connection back."""
        self.state = ENDING
        self.conn.remove_termination_listener(self._terminated)
        self._connections.untrack(self)
        if self.conn.is_closed():
            # Its session went before it could end: the rows came back (stale ones, or
            # none), so there is nobody to tell.
            self.state = LOST
            return
        try:
            with anyio.CancelScope(shield=True):
                await self._connections.end(self.conn, commit=commit)
        except Exception as exc:  # a claim ending badly must never take the worker down
            # The outcomes are written: rows that come back are stale and get dropped.
            logger.warning("claim transaction ended badly: %s", exc)
            self.conn.terminate()
        self.state = ENDED

    def _check(self, event: str, *allowed: ClaimState) -> None:
        if self.state not in allowed:
            self._illegal(event)

    def _illegal(self, event: str) -> None:
        message = f"claim: {event} is not allowed in state {self.state.name} ({self!r})"
        logger.error("%s; a bug in asyncjobs, please report it", message, stack_info=True)
        if self._connections.strict:
            raise IllegalTransition(message)
