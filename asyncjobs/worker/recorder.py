"""Records what happens to attempts: claimed jobs starting, finished attempts' outcomes.

Both go out together, many per round trip, on one connection of the recorder's own: one
statement and one commit (an fsync) for everything ready, instead of one each for every
claim's start and every batch of outcomes.

Order matters: an outcome is committed before its claim ends, so a crash in between leaves
a recorded outcome and a stale queue row (dropped at the next claim), never a lost job.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Sequence

import anyio
import asyncpg

from ..db.connections import DATABASE_ERRORS, close_gently, connect, connection_problem
from ..db.parameters import StartAndFinish
from ..db.sql import Queries
from ..retry import RetryDelay
from ..serialization import dumps
from .attempt import Outcome, RunningJob, error_record

logger = logging.getLogger("asyncjobs.recorder")

# Keeps a batch's NOTIFY payload of job ids well under PostgreSQL's 8000-byte limit.
MAX_BATCH = 400
# Every row the recorder touches is found by primary key, and its one statement runs
# thousands of times a second: planned once (a generic plan), it costs a fraction of being
# re-planned at every call, as PostgreSQL otherwise chose. Without sequential scans that
# one plan is the index one whatever the statistics said when it was made: a plan made
# while a fresh install's jobs table was tiny scanned the whole table, and writes slowed
# down by the second under a backlog until autovacuum analyzed the table. (Figures:
# benchmarks/README.md.)
RECORDER_SETTINGS = {"enable_seqscan": "off", "plan_cache_mode": "force_generic_plan"}
# How long ready outcomes may wait for a start that is being claimed, to share its write.
COALESCE_WAIT = 0.005


# A claimed job whose start PostgreSQL refused even alone: (job id, queue entry, the error).
Refused = tuple[int, int, BaseException]


class _Start:
    """A claim's request to start its jobs, answered by the next write."""

    __slots__ = ("done", "entries", "error", "job_ids", "refused", "rows")

    def __init__(self, job_ids: list[int], entries: list[int]) -> None:
        self.job_ids = job_ids
        self.entries = entries
        self.rows: list[asyncpg.Record] = []
        self.refused: list[Refused] = []
        self.error: BaseException | None = None
        self.done = anyio.Event()


class Expected:
    """A claim's promise of a start (Recorder.expect): used once by `Recorder.start()`, or
    given back by `release()`. As a context manager it is given back on the way out unless
    it was used or passed on, so that no error path leaves the recorder waiting.

    A claim whose start is written by another task passes it on with `pass_on()`: the token
    returned is the one that task must use or give back."""

    __slots__ = ("_recorder", "_spent")

    def __init__(self, recorder: Recorder) -> None:
        self._recorder = recorder
        self._spent = False

    def use(self) -> None:
        """Spend it on the start it promised (Recorder.start)."""
        self._spend()

    def release(self) -> None:
        """No start comes of it: outcomes waiting for one go out now. Nothing, once spent."""
        if not self._spent:
            self._spent = True
            self._recorder._unexpect()

    def pass_on(self) -> Expected:
        """The same promise, in a token for another owner; this one is spent."""
        self._spend()
        return Expected(self._recorder)

    def _spend(self) -> None:
        if self._spent:
            raise RuntimeError("a recorder expectation is used once")
        self._spent = True

    def __enter__(self) -> Expected:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()


class Recorder:
    """Writes starts and outcomes for one worker (statement `start_and_finish`).

    One write at a time, each taking everything that is ready when it begins. (A second
    connection writing at once split the batches into more, smaller writes, and took more
    CPU: see benchmarks/README.md.)
    """

    def __init__(self, dsn: str, sql: Queries, worker_id: uuid.UUID) -> None:
        self._dsn = dsn
        self._sql = sql
        self._worker_id = worker_id
        self._conn: asyncpg.Connection | None = None
        self._outcomes: list[tuple[RunningJob, Outcome]] = []
        self._starts: list[_Start] = []
        self._wake = anyio.Event()
        self._idle = anyio.Event()
        self._idle.set()
        self._retry_at = 0.0
        self._retry = RetryDelay()
        # Claims being made whose start will come (tokens of expect() not spent yet), and
        # since when outcomes have been waiting for one.
        self._expected = 0
        self._expected_since: float | None = None
        # A write in flight; writes that have not settled their claims yet, and their
        # outcomes (until settled: a forced stop gives those up too).
        self._writing = False
        self._unsettled = 0
        self._in_flight: dict[int, list[tuple[RunningJob, Outcome]]] = {}

    async def open(self) -> None:
        """Connect (a database that is not there fails the worker's start), and run the
        statement once with nothing to do: the first real write (the first jobs, or a
        peer's jobs after its crash) then skips parsing and planning."""
        conn = await connect(self._dsn, settings=RECORDER_SETTINGS)
        try:
            await conn.fetch(self._sql.start_and_finish, *_nothing(self._worker_id))
        except BaseException:
            conn.terminate()
            raise
        self._conn = conn

    async def close(self) -> None:
        """Close the connection."""
        conn, self._conn = self._conn, None
        if conn is not None:
            await close_gently(conn)

    def expect(self) -> Expected:
        """A claim is being made: outcomes ready meanwhile wait (up to COALESCE_WAIT) to go
        out with its start. The token is used by `start()` or given back (`release()`, or
        leaving its `with` block): either way, once."""
        self._expected += 1
        return Expected(self)

    def _unexpect(self) -> None:
        self._expected -= 1
        self._wake.set()

    async def start(
        self, expected: Expected, job_ids: list[int], entries: list[int]
    ) -> tuple[list[asyncpg.Record], list[Refused]]:
        """Start the jobs of these claimed queue rows with the next write, using the claim's
        `expected`; return the rows of those that started (see the statement for which
        don't), and those whose start PostgreSQL refused, each tried alone (the caller fails
        them). Raises what the write raised when the connection or the server is to blame;
        the caller shields it, so a started job is never lost to a cancellation."""
        expected.use()
        request = _Start(job_ids, entries)
        self._starts.append(request)
        self._busy()
        self._expected -= 1
        if not self._outcomes and not self._writing and anyio.current_time() >= self._retry_at:
            # An idle worker's start: written here, in the caller's task, rather than handed
            # to the writer loop (two task switches less between a NOTIFY and the job).
            await self._write(*self._take())
        await request.done.wait()
        if request.error is not None:
            raise request.error
        return request.rows, request.refused

    def submit(self, job: RunningJob, outcome: Outcome) -> None:
        """Queue an outcome for writing; the claim ends once all its jobs are settled."""
        self._outcomes.append((job, outcome))
        self._busy()

    def _busy(self) -> None:
        if self._idle.is_set():
            self._idle = anyio.Event()
        self._wake.set()

    async def drain(self) -> None:
        """Wait until every submitted outcome is written and its claim ended."""
        await self._idle.wait()

    def give_up(self) -> list[RunningJob]:
        """Drop the outcomes not written yet (a forced stop), those being written included;
        return their jobs, whose claims must roll back so that they run again. (A write in
        flight may still commit: the rows that come back are then stale, and dropped.)"""
        jobs = [job for job, _ in self._outcomes]
        jobs.extend(job for batch in self._in_flight.values() for job, _ in batch)
        self._outcomes = []
        return list(dict.fromkeys(jobs))

    async def run(self) -> None:
        """Write until cancelled."""
        async with anyio.create_task_group() as tg:
            while True:
                self._wake = anyio.Event()
                pending = bool(self._outcomes or self._starts)
                if not pending and not self._unsettled:
                    self._idle.set()
                wait = self._retry_at - anyio.current_time()
                if pending and not self._starts and self._expected and wait <= 0:
                    # Only outcomes, and a claim's start is on its way: write them with it,
                    # one round trip and one commit for both.
                    if self._expected_since is None:
                        self._expected_since = anyio.current_time()
                    wait = self._expected_since + COALESCE_WAIT - anyio.current_time()
                if not pending or self._writing or wait > 0:
                    with anyio.move_on_after(wait if wait > 0 else math.inf):
                        await self._wake.wait()
                    continue
                tg.start_soon(self._write, *self._take())

    def _take(self) -> tuple[list[tuple[RunningJob, Outcome]], list[_Start]]:
        """What the write that begins now carries: the ready outcomes (up to MAX_BATCH) and
        every start request."""
        outcomes, self._outcomes = self._outcomes[:MAX_BATCH], self._outcomes[MAX_BATCH:]
        starts, self._starts = self._starts, []
        self._expected_since = None
        self._writing = True
        self._unsettled += 1
        return outcomes, starts

    async def _write(
        self, outcomes: list[tuple[RunningJob, Outcome]], starts: list[_Start]
    ) -> None:
        batch = id(outcomes)
        self._in_flight[batch] = outcomes
        try:
            # Outcomes of lost claims no longer count: their jobs are queued again. A
            # handed-off job's outcome is guarded by its attempt like any other.
            written = [
                item
                for item in outcomes
                if item[1].kind != "discard" and (item[0].handed_off or not item[0].claim.lost)
            ]
            try:
                await self._execute(written, starts)
            except DATABASE_ERRORS as exc:
                if starts and not connection_problem(exc):
                    # As for outcomes (below): one job's start must not hold up the others
                    # of its claim (and of the claims after it, which would claim it again).
                    await self._isolate_starts(starts)
                for request in starts:
                    if not request.done.is_set():
                        request.error = exc
                        request.done.set()
                if written and not connection_problem(exc):
                    # Not the connection: something in the batch. The others must not
                    # wait behind it forever, so each goes alone, and one refused alone
                    # becomes a failure that says so.
                    alone = {id(item) for item in written}
                    outcomes = [
                        *(await self._isolate(written)),
                        *(item for item in outcomes if id(item) not in alone),
                    ]
                if not outcomes and all(request.error is None for request in starts):
                    return  # only starts, each answered alone: nothing to write again
                delay = self._retry.next()
                self._retry_at = anyio.current_time() + delay
                logger.warning("cannot write outcomes (retrying in %.2fs): %s", delay, exc)
                self._outcomes[:0] = outcomes
                return
            finally:
                self._writing = False
                self._wake.set()
            # Written: a forced stop has nothing to give up here any more.
            del self._in_flight[batch]
            self._retry.reset()
            await self._settle(outcomes)
        finally:
            self._in_flight.pop(batch, None)
            self._unsettled -= 1
            self._wake.set()

    async def _isolate_starts(self, starts: list[_Start]) -> None:
        """Write a refused batch's starts one job at a time: each request learns which of
        its jobs started and which PostgreSQL refused. The connection or the server failing
        meanwhile leaves the requests not yet answered to fail as the batch did."""
        for request in starts:
            rows: list[asyncpg.Record] = []
            for job_id, entry in zip(request.job_ids, request.entries, strict=True):
                alone = _Start([job_id], [entry])
                try:
                    await self._execute([], [alone])
                except DATABASE_ERRORS as exc:
                    if connection_problem(exc):
                        return
                    request.refused.append((job_id, entry, exc))
                else:
                    rows.extend(alone.rows)
            request.rows = rows
            request.done.set()

    async def _isolate(
        self, batch: list[tuple[RunningJob, Outcome]]
    ) -> list[tuple[RunningJob, Outcome]]:
        """Write a refused batch's outcomes one by one; return those still to write: each
        refused one as a failure naming the refusal (written by the next round).

        A failure standing in for a refused outcome that is refused too (a trigger of yours
        refusing the row, say) is given up: its claim rolls back instead of committing, so
        the job runs again (that attempt counted as lost) rather than holding up the rest.
        """
        left: list[tuple[RunningJob, Outcome]] = []
        for job, outcome in batch:
            try:
                await self._execute([(job, outcome)], [])
            except DATABASE_ERRORS as exc:
                if connection_problem(exc):
                    left.append((job, outcome))
                elif outcome.stands_in:
                    logger.error(
                        "job %s: no outcome of this attempt can be stored (%s); it will run again",
                        job.id,
                        exc,
                    )
                    job.claim.must_roll_back()
                    await self._settle([(job, outcome)])
                else:
                    logger.error("job %s: its outcome was refused, so it fails: %s", job.id, exc)
                    refused = RuntimeError(f"the attempt's outcome could not be stored: {exc}")
                    error = error_record(refused, job.attempt)
                    left.append((job, Outcome("failed", error=error, stands_in=True)))
            else:
                await self._settle([(job, outcome)])
        return left

    async def _execute(
        self, outcomes: list[tuple[RunningJob, Outcome]], starts: list[_Start]
    ) -> None:
        if not outcomes and not starts:
            return
        record = _nothing(self._worker_id)
        for job, outcome in outcomes:
            record.job_ids.append(job.id)
            record.entries.append(job.entry)
            record.attempts.append(job.attempt)
            record.outcomes.append(outcome.kind)
            record.results.append(outcome.result)
            record.errors.append(dumps(outcome.error) if outcome.error is not None else None)
            record.delays.append(outcome.delay)
        for request in starts:
            record.start_job_ids.extend(request.job_ids)
            record.start_entries.extend(request.entries)
        if self._conn is None or self._conn.is_closed():
            await self.open()
        assert self._conn is not None
        try:
            rows = await self._conn.fetch(self._sql.start_and_finish, *record)
        except BaseException:
            # Whatever state the session is in now, a fresh one is simpler than finding out.
            self._conn.terminate()
            self._conn = None
            raise
        if starts:
            by_id = {row["id"]: row for row in rows if row["id"] is not None}
            for request in starts:
                request.rows = [by_id[i] for i in request.job_ids if i in by_id]
                request.done.set()

    async def _settle(self, batch: Sequence[tuple[RunningJob, Outcome]]) -> None:
        for job, _ in batch:
            if not job.handed_off:
                await job.claim.job_done(job)


def _nothing(worker_id: uuid.UUID) -> StartAndFinish:
    """The parameters of a write with no outcome and no start, to fill in."""
    return StartAndFinish([], [], [], [], [], [], [], [], [], worker_id)
