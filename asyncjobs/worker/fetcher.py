"""The fetch loop: claims jobs when a slot is free and something is due, and starts them.

It wakes on NOTIFY from enqueue, on a freed slot, at the next due run_at, and on a slow
fallback poll; it never claims more than the free slots. A claim's jobs are started (by
the recorder) while the next claim's DELETE runs: the two round trips overlap.
"""

from __future__ import annotations

import functools
import logging
import math
import time
import uuid
from collections.abc import Callable, Sequence

import anyio
import anyio.abc
import anyio.lowlevel
import asyncpg

from ..cancel import CancelReason
from ..db.connections import DATABASE_ERRORS
from ..db.pool import Pool
from ..db.sql import Queries
from ..hooks import JobRun
from ..retry import RetryDelay
from .attempt import RunningJob
from .claims import Claim, ClaimConnections
from .lost import lost_run
from .recorder import Expected, Recorder, Refused
from .takeover import Takeovers

logger = logging.getLogger("asyncjobs.fetcher")


# How long a claim may wait for more free slots while a backlog lasts (see Fetcher.run).
GATHER_WAIT = 0.01


class Fetcher:
    """Claims jobs for one worker."""

    def __init__(
        self,
        *,
        sql: Queries,
        pool: Pool,
        claims: ClaimConnections,
        recorder: Recorder,
        worker_id: uuid.UUID,
        queues: Sequence[str],
        free_slots: Callable[[], int],
        launch: Callable[[RunningJob], None],
        on_claim_lost: Callable[[Claim], None],
        on_lost: Callable[[list[JobRun]], None],
        takeovers: Takeovers,
        poll_interval: float,
        batch_size: int,
        gather: int = 1,
    ) -> None:
        self._sql = sql
        self._pool = pool
        self._claims = claims
        self._recorder = recorder
        self._worker_id = worker_id
        self._queues = list(queues)
        self._free_slots = free_slots
        self._launch = launch
        self._on_claim_lost = on_claim_lost
        self._on_lost = on_lost
        self._takeovers = takeovers
        self._poll_interval = poll_interval
        self._batch_size = batch_size
        self._gather = gather
        self._wake = anyio.Event()
        self._due_at = math.inf  # wall-clock epoch of the next known due job
        # Slots promised to claimed jobs whose start is still being written.
        self._reserved = 0
        self._starting: anyio.abc.TaskGroup | None = None
        # Queue rows claimed so far (their dead tuples are what queue_vacuum.py is about).
        self.claimed = 0

    def wake(self, due_at: float | None = None) -> None:
        """Something may be claimable (now, or at epoch `due_at`)."""
        if due_at is not None:
            self._due_at = min(self._due_at, due_at)
        self._wake.set()

    @property
    def starting(self) -> bool:
        """Whether claimed jobs' starts are being written (their jobs not launched yet)."""
        return self._reserved > 0

    def free(self) -> int:
        """Slots neither running a job nor promised to one being started."""
        return self._free_slots() - self._reserved

    async def run(self) -> None:
        """Claim and start jobs until cancelled; starts still being written finish first
        (they are shielded), so every started job reaches the worker.

        While a backlog lasts (the last claim was full), a claim waits until `gather` slots
        are free or GATHER_WAIT has passed: short jobs then share claims, and so the round
        trips and commits that a claim costs. A claim's start is written in the background
        (its slots reserved), so the next claim need not wait for it.
        """
        retry = RetryDelay(most=5.0)
        gather_until = -math.inf
        async with anyio.create_task_group() as tg:
            self._starting = tg
            while True:
                # A fresh event before claiming: a wake during the claim is not lost.
                self._wake = anyio.Event()
                parked_until = self._claims.parked_until()
                if parked_until is not None and parked_until <= time.monotonic():
                    tg.start_soon(self._claims.end_parked)
                timeout = math.inf
                try:
                    free = self.free()
                    if free > 0:
                        want = min(free, self._batch_size)
                        wait = gather_until - anyio.current_time()
                        if want < self._gather and wait > 0:
                            with anyio.move_on_after(wait):
                                await self._wake.wait()
                            continue
                        got = await self.claim(want)
                        if got == want:
                            gather_until = anyio.current_time() + GATHER_WAIT
                            self._claims.backlog = True
                            continue
                        gather_until = -math.inf
                        self._claims.backlog = False
                        # Nothing more to claim now: nothing will join the parked claims.
                        await self._claims.end_parked(all_of_them=True)
                        timeout = await self._until_next_due()
                    retry.reset()
                except DATABASE_ERRORS as exc:
                    timeout = retry.next()
                    logger.warning("fetch failed (retrying in %.2fs): %s", timeout, exc)
                parked_until = self._claims.parked_until()
                if parked_until is not None:
                    timeout = min(timeout, max(0.0, parked_until - time.monotonic()))
                with anyio.move_on_after(timeout):
                    await self._wake.wait()

    async def _until_next_due(self) -> float:
        seconds = await self._pool.fetchval(self._sql.next_due, self._queues)
        if seconds is not None:
            self._due_at = min(self._due_at, time.time() + float(seconds))
        hint = self._due_at - time.time()
        if hint <= 0:
            self._due_at = math.inf
            hint = self._poll_interval
        return max(0.0, min(self._poll_interval, hint))

    async def claim(self, limit: int) -> int:
        """Claim up to `limit` due jobs in one held transaction and have them started;
        return how many queue rows were claimed (stale ones included, so the caller claims
        again)."""
        joinable = self._claims.joinable()
        if joinable is not None:
            return await self._join(joinable, limit)
        claim = await self._claims.open(self._on_claim_lost)
        with self._recorder.expect() as expected:
            try:
                rows = await claim.conn.fetch(self._sql.claim, self._queues, limit)
            except BaseException:
                claim.give_up()
                raise
            if not rows:
                expected.release()  # before the rollback's round trip: outcomes go now
                await claim.nothing_claimed()
                return 0
            claim.rows_claimed()
            # No backlog: nothing to claim meanwhile, so the start goes first, in this task.
            await self._begin_start(
                claim, rows, expected.pass_on(), joined=False, wait=not self._claims.backlog
            )
            return len(rows)

    async def _join(self, claim: Claim, limit: int) -> int:
        """Claim more rows inside an open claim's transaction (see ClaimState.JOINING)."""
        claim.begin_join()
        with self._recorder.expect() as expected:
            try:
                # Shielded: rows deleted here but never started must not be committed with
                # the claim, and giving the claim up (below) would interrupt its other jobs.
                with anyio.CancelScope(shield=True):
                    rows = await claim.conn.fetch(self._sql.claim, self._queues, limit)
            except BaseException:
                # The server rolls the whole claim back; its running jobs stop as for any
                # lost claim, and every row is claimable again.
                claim.give_up()
                raise
            if not rows:
                expected.release()
                await claim.nothing_claimed()
                return 0
            claim.rows_claimed()
            await self._begin_start(claim, rows, expected.pass_on(), joined=True, wait=False)
            return len(rows)

    async def _begin_start(
        self,
        claim: Claim,
        rows: Sequence[asyncpg.Record],
        expected: Expected,
        *,
        joined: bool,
        wait: bool,
    ) -> None:
        """Start the claimed rows' jobs, their slots reserved meanwhile: in the background,
        so that the next claim need not wait, or (`wait`) before returning."""
        assert self._starting is not None
        self.claimed += len(rows)
        self._reserved += len(rows)
        if wait:
            await self._start_claimed(claim, rows, expected, joined)
        else:
            self._starting.start_soon(self._start_claimed, claim, rows, expected, joined)

    async def _start_claimed(
        self, claim: Claim, rows: Sequence[asyncpg.Record], expected: Expected, joined: bool
    ) -> None:
        # Shielded from the fetcher's cancellation (shutdown): once the start may have
        # committed, the jobs must reach the worker, whose shutdown then releases them
        # without spending the attempt. Cancelled in between, they would be left
        # 'processing' with their rows back in the queue, and the next claim would count
        # a "worker lost" attempt against them.
        with anyio.CancelScope(shield=True), expected:
            try:
                await self._start(claim, rows, expected)
            except BaseException as exc:
                # Nothing ran: every row goes back for the next claim (with the claim's
                # other jobs, if it has any: see Claim.start_failed).
                await claim.start_failed(joined=joined)
                if not isinstance(exc, DATABASE_ERRORS):
                    raise
                logger.warning("cannot start claimed jobs (they stay queued): %s", exc)
                return
            finally:
                self._reserved -= len(rows)
                self.wake()
            # Settles the claim if nothing started (stale rows, or jobs out of attempts) or
            # every job is already done.
            await claim.start_done(joined=joined)

    async def _fail_unstartable(self, claim: Claim, refused: list[Refused]) -> None:
        """Fail the claimed jobs whose start PostgreSQL refused even alone: claimed again,
        they would be refused again, forever. If their failure can't be stored either, the
        claim rolls back once its other jobs are done, and they come back to the queue."""
        messages = []
        for job_id, _, exc in refused:
            logger.error("job %s: PostgreSQL refused its start, so it fails: %s", job_id, exc)
            messages.append(
                f"PostgreSQL refused to start this job ({type(exc).__name__}: {exc}); it did "
                "not run. A trigger, a constraint or a value written by plain SQL is the usual "
                "cause"
            )
        try:
            await self._pool.fetchval(
                self._sql.fail_unstartable_jobs,
                [job_id for job_id, _, _ in refused],
                [entry for _, entry, _ in refused],
                messages,
            )
        except DATABASE_ERRORS as exc:
            logger.error(
                "jobs %s: their failure can't be stored either (%s); they go back to the queue",
                [job_id for job_id, _, _ in refused],
                exc,
            )
            claim.must_roll_back()

    async def _handshake(self, job: RunningJob, previous: uuid.UUID, lost: JobRun | None) -> None:
        if not await self._takeovers.wait(job.id, job.entry, job.attempt, previous, lost):
            # Cancelled, requeued or deleted meanwhile: stopped before its code runs, even
            # if the message saying so has not arrived yet.
            job.cancel(CancelReason.REQUEUED)
            await anyio.lowlevel.checkpoint()

    async def _start(
        self, claim: Claim, rows: Sequence[asyncpg.Record], expected: Expected
    ) -> None:
        """Start the claimed rows' jobs (through the recorder) and launch them."""
        job_ids = [row["job_id"] for row in rows]
        entries = [row["id"] for row in rows]
        started, refused = await self._recorder.start(expected, job_ids, entries)
        if refused:
            await self._fail_unstartable(claim, refused)
        # Attempts whose worker died: this worker reports them (see lost.py).
        lost = [
            lost_run(row, attempt=row["attempt"] - 1, gave_up=False, reported_by=self._worker_id)
            for row in started
            if row["lost"]
        ]
        if len(started) < len(rows):
            failed = await self._pool.fetch(self._sql.fail_lost_jobs, job_ids, entries)
            for row in failed:
                if row["id"] is None:
                    continue
                run = lost_run(
                    row, attempt=row["attempt"], gave_up=True, reported_by=self._worker_id
                )
                if row["lost"]:
                    lost.append(run)
                elif row["lost_worker"] is not None:
                    # Its worker holds its key: alive (it reports its attempt itself) or
                    # dying; its answer tells which (see takeover.py). No attempt follows,
                    # so the ask names the one after the last.
                    self._takeovers.report_if_gone(run, row["entry"], row["attempt"] + 1)
        if lost:
            self._on_lost(lost)
        for row in started:
            job = RunningJob(
                id=row["id"],
                entry=row["queue_entry"],
                attempt=row["attempt"],
                max_attempts=row["max_attempts"],
                task=row["task"],
                args=row["args"],
                kwargs=row["kwargs"],
                timeout=row["timeout"],
                queue=row["queue"],
                backoff=row["backoff"],
                checkpoint=row["checkpoint"],
                trace_context=row["trace_context"],
                waited=row["waited"],
                claim=claim,
                taken_from=row["taken_from"],
            )
            # The attempt this start ended, if its worker holds its key: alive (it reports
            # the attempt itself) or dying; its answer tells which (see takeover.py).
            unsure = None
            if not row["lost"] and row["lost_worker"] is not None:
                unsure = lost_run(
                    row, attempt=job.attempt - 1, gave_up=False, reported_by=self._worker_id
                )
                if unsure.worker_id != job.taken_from:
                    # Not the worker this attempt waits for: one that took the job over
                    # from it and lost it in turn while waiting (a chained takeover).
                    self._takeovers.report_if_gone(unsure, job.entry, job.attempt)
                    unsure = None
            if job.taken_from is not None:
                # Its last worker is alive and may still run it: the job runs once that
                # worker has stopped it (see takeover.py). Awaited in the job's own scope,
                # once launched: a cancel, requeue, delete or shutdown meanwhile reaches it.
                job.before_run = functools.partial(self._handshake, job, job.taken_from, unsure)
            claim.job_started(job)
            self._launch(job)
        if claim.lost and claim.jobs:
            self._on_claim_lost(claim)
