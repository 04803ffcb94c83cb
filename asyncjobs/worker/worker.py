"""The worker: one task group holding a listener, a fetcher, job runners, a recorder, a
heartbeat and a scheduler; stopped by `stop()`, a stop broadcast, or leaving `async with`."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Unpack

import anyio
import asyncpg
from anyio.abc import TaskGroup, TaskStatus

from .. import validation
from ..cancel import CancelReason
from ..client.schedules import sync_declared
from ..client.task_names import record_task_names
from ..db.connections import DATABASE_ERRORS, connect
from ..db.migrations import check, migrate
from ..db.pool import Pool, open_pool
from ..db.sql import Channels, Queries
from ..errors import ConfigurationError, ConnectionFailed
from ..hooks import Around, Hooks, JobRun, call_each
from ..job_context import JobContext
from ..retry import RetryDelay
from .attempt import Outcome, RunningJob, hook_outcome
from .claims import Claim, ClaimConnections
from .fetcher import Fetcher
from .handoff import HandOffs
from .heartbeat import Heartbeat
from .job_tasks import JobTasks
from .lease import LeaseSession
from .listener import Listener
from .loop_watchdog import LoopWatchdog
from .lost import log_lost
from .progress import ProgressWriter
from .pruner import Pruner
from .queue_vacuum import QueueVacuum
from .recorder import Recorder
from .runner import JobRunner
from .scheduler import Scheduler
from .settings import WorkerOptions, WorkerSettings
from .takeover import Takeovers
from .watcher import Watcher

if TYPE_CHECKING:
    from ..app import App

logger = logging.getLogger("asyncjobs.worker")

# Jobs claimed at most by one claim statement.
CLAIM_BATCH = 50
# Seconds a worker's teardown (its sessions closed, its row removed) may take at most.
TEARDOWN_LIMIT = 10.0
# Seconds a stopping worker waits at most for the answers its reports of lost attempts wait
# for (see takeover.py); only while some are open, which takes two failures at once.
SETTLE_REPORTS = 1.0

_CHANGES = {
    "cancelled": CancelReason.CANCELLED,
    "requeued": CancelReason.REQUEUED,
    "deleted": CancelReason.DELETED,
}


# Control messages kept for jobs whose start may be in flight (see _on_control).
_EARLY_LIMIT = 1000


class Worker:
    """Runs an app's jobs: `async with app.worker(...)`, or `await worker.run()`."""

    def __init__(
        self,
        app: App,
        settings: WorkerSettings | None = None,
        /,
        **options: Unpack[WorkerOptions],
    ) -> None:
        """A worker of `app` with these settings, or those made of `options` (see
        WorkerSettings); options given with settings replace theirs."""
        if settings is None:
            settings = WorkerSettings(**options)
        elif options:
            settings = dataclasses.replace(settings, **options)
        self.settings = settings
        self.app = app
        self.id = uuid.uuid4()
        self.concurrency = settings.concurrency
        self.queues = settings.queues_of(app)
        # The grace of this worker's stop: the settings', unless a stop gives another.
        self.grace = settings.grace
        # None: this worker doesn't prune (the app keeps jobs forever, or prune=False).
        self.retention = settings.pruning(app)
        self.sql = Queries.for_schema(app.schema)
        self.channels = Channels.for_schema(app.schema)
        self.running: dict[int, RunningJob] = {}
        # Control messages that came while starts were in flight, for jobs not launched yet.
        self._early: dict[tuple[int, int], CancelReason] = {}
        self._fetcher: Fetcher | None = None
        self._scheduler: Scheduler | None = None
        # Events need a running event loop: made in run(), so the constructor stays inert.
        self._stop_requested: anyio.Event | None = None
        self._force: anyio.Event | None = None
        self._stopped: anyio.Event | None = None
        self._idle: anyio.Event | None = None
        # Explicit stop() calls (a signal, the user); a stop broadcast is not one of them.
        self._stop_calls = 0
        self._stop_wanted = False
        self._forced = False
        self._stack: contextlib.AsyncExitStack | None = None
        self._jobs: JobTasks | None = None
        self._exits_when_forced = False
        # Sync jobs whose threads a forced stop left running, their claims still held.
        self.abandoned: list[RunningJob] = []
        self._services: TaskGroup | None = None
        self._pool: Pool | None = None
        self._watcher: Watcher | None = None
        self._hand_offs: HandOffs | None = None
        self._takeovers: Takeovers | None = None
        self._superseded: dict[tuple[int, int], RunningJob] = {}
        self._outbox: list[str | None] = []
        self._outbox_ready: anyio.Event | None = None
        # The app's hooks if it has job hooks (read as the worker starts), else None: the
        # attempt then pays one test for them.
        self._job_hooks: Hooks | None = None

    # -- lifecycle --------------------------------------------------------------------

    async def __aenter__(self) -> Worker:
        try:
            async with contextlib.AsyncExitStack() as stack:
                tg = await stack.enter_async_context(anyio.create_task_group())
                await tg.start(self.run)
                stack.push_async_callback(self._stop_and_wait)
                self._stack = stack.pop_all()
        except BaseExceptionGroup as group:
            # The task group wraps what run() raised before it started (a MigrationError,
            # a ConfigurationError): give the caller that error itself.
            if len(group.exceptions) == 1 and isinstance(group.exceptions[0], Exception):
                raise group.exceptions[0] from None
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.__aexit__(exc_type, exc, tb)

    async def _stop_and_wait(self) -> None:
        # Leaving `async with` after a stop() must not count as a second, forcing, stop.
        self._request_stop(None)
        assert self._stopped is not None
        await self._stopped.wait()

    def stop(self, grace: float | None = None, *, force: bool = False) -> None:
        """Stop taking jobs; give running ones `grace` seconds (default: the worker's), then
        interrupt them and queue them again without spending an attempt.

        `force=True`, or a second call, skips what is left of the grace. A stop broadcast
        (`stop_workers`) never counts as a call: however often it is seen, it gives the
        grace it asked for.
        """
        if grace is not None:
            grace = validation.seconds("grace", grace)
        self._stop_calls += 1
        self._request_stop(grace, force=force or self._stop_calls > 1)

    def _request_stop(self, grace: float | None, *, force: bool = False) -> None:
        """The first request sets the grace; later ones change nothing unless `force`."""
        if not self._stop_wanted:
            self._stop_wanted = True
            if grace is not None:
                self.grace = grace
        self._forced = self._forced or force
        self._signal_stop()

    def _stop_broadcast(self, grace: object) -> None:
        """A stop asked of every worker (NOTIFY or the heartbeat's flag), with its grace as
        stored: anything but a valid number of seconds gets this worker's own grace."""
        try:
            checked: float | None = validation.seconds("stop_workers grace", grace)
        except ConfigurationError as exc:
            logger.warning(
                "worker %s: a stop broadcast carries an unusable grace (%s); this worker's "
                "own grace of %.1fs applies",
                self.id,
                exc,
                self.grace,
            )
            checked = None
        self._request_stop(checked)

    def _signal_stop(self) -> None:
        if self._stop_wanted and self._stop_requested is not None:
            self._stop_requested.set()
        if self._forced and self._force is not None:
            self._force.set()

    @property
    def pool(self) -> Pool | None:
        """The worker's connection pool once it runs (for hooks that read the database,
        such as metrics; see Client.pool for how to use it), else None."""
        return self._pool

    @property
    def stopping(self) -> bool:
        """Whether a stop was requested."""
        return self._stop_wanted

    async def run(
        self,
        *,
        exits_when_forced: bool = False,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run until stopped. Connection failures are retried with backoff, each logged with
        what is wrong; `task_status.started()` comes after the first attempt either way.
        A refusal that no retry can mend (no such database, failed authentication) raises
        ConnectionFailed instead: before `started()` if it is the first attempt's.

        A sync job's thread can't be interrupted, and its job must not run elsewhere while
        its code may still run. So a forced stop waits for such threads, their claims held,
        unless `exits_when_forced`: then it returns without them, listed in `abandoned`
        with their claims still held, and the caller must end the process at once (the
        claims then roll back and the jobs run again, that attempt counted as lost).
        """
        self._exits_when_forced = exits_when_forced
        self._stop_requested, self._force, self._stopped = (
            anyio.Event(),
            anyio.Event(),
            anyio.Event(),
        )
        self._signal_stop()
        retry = RetryDelay(0.5, 30.0)
        try:
            while not self.stopping:
                try:
                    await self._serve(task_status)
                    return
                except ConnectionFailed as exc:
                    if exc.permanent:
                        raise
                    delay = retry.next()
                    logger.error("worker cannot start (retrying in %.1fs): %s", delay, exc)
                    if task_status is not anyio.TASK_STATUS_IGNORED:
                        task_status.started()
                        task_status = anyio.TASK_STATUS_IGNORED
                    with anyio.move_on_after(delay):
                        await self._stop_requested.wait()
        finally:
            self._stopped.set()

    async def _serve(self, task_status: TaskStatus[None]) -> None:
        stack = contextlib.AsyncExitStack()
        try:
            await self._serve_on(stack, task_status)
        finally:
            # Shielded, so that a worker cancelled from outside (its host's task group, not
            # stop()) still ends its sessions: in a process that lives on, an open claim or
            # lease session would keep its jobs from every other worker. Bounded: a server
            # that doesn't answer must not keep the host waiting.
            with anyio.move_on_after(TEARDOWN_LIMIT, shield=True):
                await stack.aclose()

    async def _serve_on(
        self, stack: contextlib.AsyncExitStack, task_status: TaskStatus[None]
    ) -> None:
        dsn = await stack.enter_async_context(self.app.database())
        # Migrated on its own connection: the pool's connections prepare statements of
        # the current schema as they open.
        conn = await connect(dsn)
        try:
            if self.app.auto_migrate:
                await migrate(conn, self.app.schema)
            else:
                await check(conn, self.app.schema)
            await sync_declared(conn, self.sql, self.app.schedules)
            await record_task_names(conn, self.sql, self.app.tasks)
        finally:
            await conn.close()
        pool = await open_pool(dsn, min_size=1, max_size=4, warm_up=self._warm_up)
        stack.push_async_callback(pool.close)
        heartbeat = Heartbeat(
            sql=self.sql,
            pool=pool,
            worker_id=self.id,
            queues=self.queues,
            concurrency=self.concurrency,
            interval=self.settings.heartbeat_interval,
            running=lambda: len(self.running),
            stop=self._stop_broadcast,
            on_lost=self._report_lost,
        )
        # The worker's key, held until its last session ends; its row names the key.
        lease = LeaseSession(dsn, self.sql, on_key=heartbeat.register, on_lost=self._lease_lost)
        key = await lease.open()
        stack.push_async_callback(self._unless_abandoned, lease.close)
        stack.push_async_callback(self._unless_abandoned, heartbeat.unregister)
        claims = ClaimConnections(
            dsn,
            self.sql.claim,
            self.queues,
            self.settings.claim_session_limit,
            hold_key=(self.sql.hold_worker_key, lambda: lease.key or key),
        )
        stack.push_async_callback(lambda: claims.close(keep={job.claim for job in self.abandoned}))
        runner = JobRunner(self.app.tasks, self.concurrency)
        recorder = Recorder(dsn, self.sql, self.id)
        await recorder.open()
        stack.push_async_callback(recorder.close)
        progress = ProgressWriter(pool, self.sql.report_progress)
        self._pool = pool
        hooks = self.app.hooks
        self._job_hooks = hooks if hooks.on_jobs else None
        takeovers = self._takeovers = Takeovers(pool, self.sql, self._report_lost)
        hand_offs = self._hand_offs = HandOffs(
            lease, after=self.settings.hand_off_after, running=self.running.values
        )
        self._fetcher = fetcher = Fetcher(
            sql=self.sql,
            pool=pool,
            claims=claims,
            recorder=recorder,
            worker_id=self.id,
            queues=self.queues,
            free_slots=lambda: 0 if self.stopping else self.concurrency - len(self.running),
            launch=lambda job: self._launch(job, runner, recorder, progress),
            on_claim_lost=self._claim_lost,
            on_lost=self._report_lost,
            takeovers=takeovers,
            poll_interval=self.settings.poll_interval,
            batch_size=CLAIM_BATCH,
            gather=max(1, min(CLAIM_BATCH, self.concurrency) // 2),
        )
        scheduler = self._scheduler = Scheduler(sql=self.sql, pool=pool, hooks=hooks)
        listener = Listener(
            dsn,
            {
                self.channels.enqueue: self._on_enqueue,
                self.channels.control: self._on_control,
                self.channels.schedules: lambda _payload: scheduler.wake(),
            },
            on_connect=lambda: self._resync(pool),
        )
        watcher = self._watcher = Watcher(
            dsn,
            self.sql,
            key=lambda: lease.key or key,
            on_rescued=fetcher.wake,
            worker_id=self.id,
            on_lost=self._report_lost,
        )
        logger.info(
            "worker %s started: queues %s, concurrency %s, key %s",
            self.id,
            ",".join(self.queues),
            self.concurrency,
            key,
        )
        async with anyio.create_task_group() as services:
            # Listening before the first claim, so no enqueue in between goes unheard.
            await services.start(listener.run)
            self._services = services
            # Before the first claim: a start may leave it a lost attempt to report.
            await services.start(takeovers.run)
            services.start_soon(lease.run)
            services.start_soon(watcher.run)
            services.start_soon(hand_offs.run)
            services.start_soon(self._send, pool)
            services.start_soon(recorder.run)
            services.start_soon(progress.run)
            if self.retention is not None:
                services.start_soon(Pruner(pool, self.sql, self.retention).run)
            services.start_soon(QueueVacuum(pool, self.sql, lambda: fetcher.claimed).run)
            services.start_soon(heartbeat.run)
            services.start_soon(scheduler.run)
            services.start_soon(LoopWatchdog().run)
            async with (
                JobTasks(self._stop_all) as self._jobs,
                anyio.create_task_group() as fetching_group,
            ):
                fetching, fetched = anyio.CancelScope(), anyio.Event()
                fetching_group.start_soon(self._fetch, fetching, fetched)
                task_status.started()
                await call_each(hooks.worker_start, self)
                assert self._stop_requested is not None
                await self._stop_requested.wait()
                claims.stop_parking()
                fetching.cancel()
                # A claim being started finishes first, so its jobs get the grace too.
                await fetched.wait()
                await self._shutdown()
            await self._drain(recorder)
            await takeovers.settle(SETTLE_REPORTS)
            await call_each(hooks.worker_stop, self)
            services.cancel_scope.cancel()
        self._services = None
        logger.info("worker %s stopped", self.id)

    async def _unless_abandoned(self, step: Callable[[], Awaitable[None]]) -> None:
        """Give up the key (`step`: close the lease session, remove the worker's row)
        unless a handed-off job's thread was abandoned: its attempt is owned by the key,
        which must stay held, and its row watched, until the process exits (then a peer
        rescues the job), not while the thread may still run."""
        if not any(job.handed_off for job in self.abandoned):
            await step()

    async def _warm_up(self, conn: asyncpg.Connection) -> None:
        """Run the pool's per-job statements once with nothing to do, so that the first real
        ones (the first jobs, or a peer's jobs after its crash) skip parsing and planning."""
        await conn.fetch(self.sql.fail_lost_jobs, [], [])

    async def _fetch(self, scope: anyio.CancelScope, done: anyio.Event) -> None:
        assert self._fetcher is not None
        try:
            with scope:
                await self._fetcher.run()
        finally:
            done.set()

    async def _shutdown(self) -> None:
        """Grace, then interrupt what still runs; the job task group then drains."""
        assert self._force is not None
        if self.running:
            logger.info(
                "worker %s stopping: %s jobs running, grace %.1fs",
                self.id,
                len(self.running),
                self.grace,
            )
            with anyio.move_on_after(self.grace):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._wait_idle, tg.cancel_scope)
                    await self._force.wait()
                    tg.cancel_scope.cancel()
        self._stop_all()
        if self.running:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._wait_idle, tg.cancel_scope)
                await self._force.wait()
                if self._exits_when_forced:
                    for job in list(self.running.values()):
                        job.give_up_thread()
                else:
                    logger.warning(
                        "worker %s: forced stop waits for the threads of sync jobs %s, which "
                        "can't be interrupted (their claims stay held until they end)",
                        self.id,
                        sorted(self.running),
                    )
                await self._wait_idle(tg.cancel_scope)

    async def _drain(self, recorder: Recorder) -> None:
        """Wait until every outcome is written; a forced stop gives up on those that keep
        failing: their claims roll back (the jobs run again, those attempts counted as
        lost), and the worker exits."""
        assert self._force is not None
        async with anyio.create_task_group() as tg:

            async def drained() -> None:
                await recorder.drain()
                tg.cancel_scope.cancel()

            tg.start_soon(drained)
            await self._force.wait()
            jobs = recorder.give_up()
            if jobs:
                logger.error(
                    "worker %s: forced stop: giving up on the outcomes of jobs %s, which "
                    "cannot be written now; they will run again",
                    self.id,
                    sorted(job.id for job in jobs),
                )
            # A handed-off job's claim is not its owner any more (it may have ended, and its
            # connection serve another claim): its attempt stays with the worker's key.
            for claim in {job.claim for job in jobs if not job.handed_off}:
                # A claim an abandoned thread's job holds ends with the process instead;
                # one ending by itself had every outcome written (a write in flight was).
                if not claim.ending and not any(job.claim is claim for job in self.abandoned):
                    claim.give_up()
            tg.cancel_scope.cancel()

    def _stop_all(self) -> None:
        """Stop every attempt now: at the end of the grace, when the worker is cancelled from
        outside, or when a job task failed (see job_tasks.py)."""
        for job in [*self.running.values(), *self._superseded.values()]:
            job.cancel(CancelReason.SHUTDOWN)

    async def _wait_idle(self, scope: anyio.CancelScope) -> None:
        while self.running:
            self._idle = anyio.Event()
            await self._idle.wait()
        scope.cancel()

    # -- jobs -------------------------------------------------------------------------

    def _launch(
        self, job: RunningJob, runner: JobRunner, recorder: Recorder, progress: ProgressWriter
    ) -> None:
        assert self._jobs is not None
        job.context = JobContext(
            job_id=job.id,
            entry=job.entry,
            attempt=job.attempt,
            max_attempts=job.max_attempts,
            task=job.task,
            queue=job.queue,
            token=job.token,
            on_change=progress.mark,
            checkpoint=job.checkpoint,
            save=progress.save,
            fence_sql=self.sql.attempt_is_current,
        )
        old = self.running.get(job.id)
        if old is not None and old is not job:
            # An attempt still stopping here (its claim lost, or the job requeued) while
            # this one waits for it (see takeover.py): kept where an ask finds it.
            self._superseded[(old.id, old.entry)] = old
        self.running[job.id] = job
        early = self._early.pop((job.id, job.entry), None)
        if early is not None:
            job.cancel(early)
        if self._hand_offs is not None:
            task = self.app.tasks.get(job.task)
            self._hand_offs.add(job, task.hand_off_after if task is not None else None)
        self._jobs.spawn(self._run_job(job, runner, recorder, progress), f"job {job.id}")

    async def _run_job(
        self, job: RunningJob, runner: JobRunner, recorder: Recorder, progress: ProgressWriter
    ) -> None:
        try:
            if self._job_hooks is None:
                outcome = await runner.run(job)
            else:
                outcome = await self._run_observed(job, runner, self._job_hooks)
            if job.context is not None and progress.needs_flush(job.context):
                # Before the outcome: once the job is finished (or handed back by a
                # shutdown), its guard refuses progress and checkpoints, and the next
                # attempt must start from the last checkpoint. Bounded: a database that
                # can't take it now must not hold up a shutdown.
                with anyio.move_on_after(5, shield=True):
                    await progress.flush(job.context)
            if outcome.kind == "abandon":
                # Nothing written and the claim left held: it must outlive the thread.
                self.abandoned.append(job)
            else:
                recorder.submit(job, outcome)
        finally:
            if self.running.get(job.id) is job:
                del self.running[job.id]
            if self._superseded.get((job.id, job.entry)) is job:
                del self._superseded[(job.id, job.entry)]
            if job.reason is CancelReason.CLAIM_LOST:
                job.release_to.add(job.entry)
            for entry in job.release_to:
                # Its code has returned (a sync job's thread too): the worker that took it
                # over may run it now (see takeover.py).
                self._notify(f"released {job.id} {entry} {self.id}")
            if self._idle is not None and not self.running:
                self._idle.set()
            if self._fetcher is not None:
                self._fetcher.wake()

    async def _run_observed(self, job: RunningJob, runner: JobRunner, hooks: Hooks) -> Outcome:
        """Run the attempt inside the app's job hooks (in this task, so that a context an
        `around_job` hook sets, such as its span, is the job's)."""
        context = job.trace_context
        run = JobRun(
            job_id=job.id,
            task=job.task,
            queue=job.queue,
            attempt=job.attempt,
            max_attempts=job.max_attempts,
            worker_id=self.id,
            waited=job.waited,
            trace_context=context if isinstance(context, dict) else None,
        )
        if hooks.job_start:
            await call_each(hooks.job_start, run)
        around = Around(hooks.job_around, run) if hooks.job_around else None
        if around is not None:
            await around.__aenter__()
        try:
            started = time.perf_counter()
            outcome = await runner.run(job)
            run.duration = time.perf_counter() - started
            run.outcome = hook_outcome(outcome, job.reason)
            run.error = outcome.error
            if outcome.kind == "retry":
                run.retry_in = outcome.delay
        finally:
            if around is not None:
                await around.__aexit__(None, None, None)
        if hooks.job_end:
            await call_each(hooks.job_end, run)
        return outcome

    def _report_lost(self, runs: list[JobRun]) -> None:
        """Report attempts whose worker died (found by this one, see lost.py): logged, and
        given to the `on_job_end` hooks in a task of their own (the finder must not wait)."""
        for run in runs:
            log_lost(run)
        hooks = self._job_hooks
        services = self._services
        if hooks is None or not hooks.job_end or services is None:
            return
        for run in runs:
            services.start_soon(call_each, hooks.job_end, run)

    def _claim_lost(self, claim: Claim) -> None:
        if claim.jobs:
            logger.warning(
                "claim connection lost: interrupting jobs %s (their rows are back in the queue)",
                sorted(job.id for job in claim.jobs),
            )
        for job in list(claim.jobs):
            job.cancel(CancelReason.CLAIM_LOST)
        # Its rows are back in the queue, and (unlike a dead worker's) no rescue says so.
        self._post(None)

    def _lease_lost(self) -> None:
        handed_off = [job for job in self.running.values() if job.handed_off]
        if handed_off:
            logger.warning(
                "lease session lost: interrupting handed-off jobs %s (they are queued again)",
                sorted(job.id for job in handed_off),
            )
        for job in handed_off:
            job.cancel(CancelReason.LEASE_LOST)

    def _notify(self, message: str) -> None:
        self._post(message)

    def _post(self, message: str | None) -> None:
        """Queue a control message (None: wake the workers of this worker's queues) for
        the sender: callers include connection callbacks, which run outside any task."""
        self._outbox.append(message)
        if self._outbox_ready is not None:
            self._outbox_ready.set()

    async def _send(self, pool: Pool) -> None:
        """Send queued messages until cancelled."""
        while True:
            ready = self._outbox_ready = anyio.Event()
            if not self._outbox:
                await ready.wait()
            messages, self._outbox = self._outbox, []
            for message in dict.fromkeys(messages):
                try:
                    if message is None:
                        await pool.fetchval(self.sql.wake_queues, self.queues)
                    else:
                        await pool.fetchval(self.sql.notify_control, message)
                except DATABASE_ERRORS as exc:
                    # Whoever waits on it checks again when its listener reconnects or a
                    # worker goes; a lost claim's rows are found by the next poll.
                    logger.warning("cannot send %r: %s", message or "wake", exc)

    # -- messages ---------------------------------------------------------------------

    def _on_enqueue(self, payload: str) -> None:
        queue, _, due = payload.partition("@")
        if queue in self.queues and self._fetcher is not None:
            self._fetcher.wake(float(due) if due else None)

    def _on_control(self, payload: str) -> None:
        kind, _, rest = payload.partition(" ")
        if kind == "workers":
            if self._watcher is not None:
                self._watcher.ring_changed()
            if self._takeovers is not None:
                self._takeovers.recheck()  # the worker a takeover waits for may be gone
            return
        if kind == "released":
            # "released JOB ROW WORKER"; without WORKER from a worker of an older version.
            job_id, entry, *sender = rest.split(" ")
            if self._takeovers is not None:
                self._takeovers.released(int(job_id), int(entry), sender[0] if sender else None)
            return
        if kind == "ask":
            self._asked(rest)
            return
        if kind in ("paused", "resumed"):
            # The claim itself skips paused queues (claim_jobs reads paused_queues), so a
            # pause needs nothing here; a resume wakes the fetcher at once.
            if rest in self.queues:
                logger.info("worker %s: queue %s %s", self.id, rest, kind)
                if kind == "resumed" and self._fetcher is not None:
                    self._fetcher.wake()
            return
        if kind == "stop":
            text, _, target = rest.partition(" ")
            if _names_another_worker(target, self.id):
                return  # another worker is asked to stop (stop_worker)
            logger.info("worker %s: stop requested by broadcast", self.id)
            grace: object = text
            with contextlib.suppress(ValueError):
                grace = float(text)
            self._stop_broadcast(grace)
            return
        reason = _CHANGES.get(kind)
        if reason is None:
            return
        job_id, _, entry = rest.partition(" ")
        ident = int(job_id)
        job = self.running.get(ident)
        if job is not None:
            if str(job.entry) == entry:
                job.cancel(reason)
            elif (old := self._superseded.get((ident, int(entry)))) is not None:
                # The attempt of the old row, still stopping while the job's next attempt
                # (claimed here, before this message arrived) waits for it.
                old.cancel(reason)
        elif self._fetcher is not None and self._fetcher.starting:
            # A start committed but not launched yet may be this job's: its launch applies
            # the message. (Most are about other workers' jobs: kept few, and only while
            # starts are in flight.)
            if len(self._early) >= _EARLY_LIMIT:
                del self._early[next(iter(self._early))]
            self._early[(int(job_id), int(entry))] = reason
        else:
            self._early.clear()

    def _asked(self, rest: str) -> None:
        """Another worker took over a job this one ran: stop it if it still runs here, and
        say `released` once its code has returned (at once if it doesn't run here)."""
        job_id, entry, attempt, worker = rest.split(" ")
        if worker != str(self.id):
            return
        ident, new, number = int(job_id), int(entry), int(attempt)
        # Older: of another queue row (the job was requeued), or an earlier attempt of the
        # same row (its claim was lost). Not the asking attempt itself, if it runs here.
        older = [
            job
            for job in (self.running.get(ident), *self._superseded.values())
            if job is not None and job.id == ident and (job.entry != new or job.attempt < number)
        ]
        for job in older:
            job.release_to.add(new)
            # Only a requeue gives a running job a new queue row; the same row asked for
            # again means this worker's claim on it was lost. (The message saying
            # 'requeued' may come after the ask: the first reason is the one kept.)
            job.cancel(CancelReason.REQUEUED if job.entry != new else CancelReason.CLAIM_LOST)
        if not older:
            self._notify(f"released {job_id} {entry} {self.id}")

    async def _resync(self, pool: Pool) -> None:
        """After a (re)connect of the listener: act on what its messages would have said."""
        if self._takeovers is not None:
            self._takeovers.recheck()
        if self._fetcher is not None:
            self._fetcher.wake()
        if self._scheduler is not None:
            self._scheduler.wake()
        jobs = list(self.running.values())
        if not jobs:
            return
        rows = await pool.fetch(self.sql.running_job_states, [job.id for job in jobs])
        current = {row["id"]: row for row in rows}
        for job in jobs:
            row = current.get(job.id)
            if row is None:
                job.cancel(CancelReason.DELETED)
            elif row["state"] == "cancelled":
                job.cancel(CancelReason.CANCELLED)
            elif row["queue_entry"] != job.entry or row["attempt"] != job.attempt:
                job.cancel(CancelReason.REQUEUED)


def _names_another_worker(target: str, me: uuid.UUID) -> bool:
    """Whether a stop broadcast's target is another worker's id (stop_worker). Anything
    else ('*', empty, a word) is for every worker, as it always was."""
    try:
        return uuid.UUID(target) != me
    except ValueError:
        return False
