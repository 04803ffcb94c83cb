"""The client: enqueue jobs, read them, and cancel, requeue or delete them from anywhere."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import uuid
from collections.abc import Coroutine, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, overload

import anyio
import asyncpg

from .. import validation
from ..db.connections import connect
from ..db.migrations import check, migrate
from ..db.pool import Pool, open_pool
from ..db.sql import Channels, Queries
from ..errors import (
    ConfigurationError,
    ConnectionFailed,
    DuplicateJob,
    JobCancelled,
    JobFailed,
    JobNotFound,
    WaitTimeout,
)
from ..job import Job, JobId, JobState, QueueInfo, WorkerInfo
from ..retry import RetryDelay
from ..tasks import JobOptions, P, Task, TaskCall, validate_queue, validate_task_name
from .connection_loss import lost_connection
from .enqueue import calls_list, enqueue_calls, enqueue_with_hooks, task_call
from .schedules import Schedules
from .task_names import KnownTaskNames
from .transactions import enqueue_in_transaction

if TYPE_CHECKING:
    from ..app import App
    from .transactions import Connection

logger = logging.getLogger("asyncjobs.client")

T = TypeVar("T")


class Client:
    """Enqueues and controls jobs. Use as `async with app.client() as client:`.

    An enqueue by name (a string) of a task that neither the app nor any worker that ever
    ran on the schema has raises UnknownTaskError, naming close matches; with
    `allow_unknown_tasks=True` it is enqueued anyway (for producers deployed before their
    workers)."""

    def __init__(self, app: App, *, allow_unknown_tasks: bool = False) -> None:
        if not isinstance(allow_unknown_tasks, bool):
            raise ConfigurationError(
                f"allow_unknown_tasks must be True or False, got {allow_unknown_tasks!r}"
            )
        self.app = app
        self.allow_unknown_tasks = allow_unknown_tasks
        self._task_names = KnownTaskNames(app.schema)
        self.sql = Queries.for_schema(app.schema)
        self.channels = Channels.for_schema(app.schema)
        self._stack: contextlib.AsyncExitStack | None = None
        self._pool: Pool | None = None
        self._dsn = ""
        self._listen_conn: asyncpg.Connection | None = None
        self._listen_lock: anyio.Lock | None = None
        self._waiters: dict[int, set[anyio.Event]] = {}
        self.schedules = Schedules(self)
        """Recurring jobs: `await client.schedules.add(name, task, "*/5 * * * *")`, etc."""

    async def __aenter__(self) -> Client:
        async with contextlib.AsyncExitStack() as stack:
            self._dsn = await stack.enter_async_context(self.app.database())
            self._pool = await open_pool(self._dsn, min_size=1, max_size=4)
            stack.push_async_callback(self._pool.close)
            async with self._pool.acquire() as conn:
                if self.app.auto_migrate:
                    await migrate(conn, self.app.schema)
                else:
                    await check(conn, self.app.schema)
            stack.push_async_callback(self._stop_listening)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            try:
                await stack.__aexit__(exc_type, exc, tb)
            finally:
                # A call after the block then says how to use the client, instead of the
                # closed pool's asyncpg error.
                self._pool = None

    @property
    def pool(self) -> Pool:
        """The client's connection pool (autocommit connections): `fetch`, `fetchrow`,
        `fetchval`, `execute` run one statement, `async with pool.acquire() as conn:`
        lends a connection for a block.

        Connections go back to it without a reset query: don't leave session state (SET,
        LISTEN, advisory locks) on them. One given back in a transaction is closed."""
        if self._pool is None:
            raise RuntimeError("use the client inside `async with app.client() as client:`")
        return self._pool

    # -- enqueue --------------------------------------------------------------------

    # The task's return type travels in the JobId, for `wait()` and `get()`: an async
    # task's R is the coroutine it makes, so that overload comes first.
    @overload
    async def enqueue(
        self, task: Task[P, Coroutine[Any, Any, T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> JobId[T]: ...
    @overload
    async def enqueue(self, task: Task[P, T], /, *args: P.args, **kwargs: P.kwargs) -> JobId[T]: ...
    @overload
    async def enqueue(self, task: str, /, *args: Any, **kwargs: Any) -> JobId[Any]: ...

    async def enqueue(self, task: Task[Any, Any] | str, /, *args: Any, **kwargs: Any) -> JobId[Any]:
        """Enqueue one job; return its id (an int; typed with what the task returns).
        Per-call options: `task.options(...)`.

        ConnectionLost (`maybe_stored` True) if the connection broke on the way: the job may
        exist; a `unique_key` makes a retry safe. ConnectionFailed: nothing was stored."""
        call = await self.call_of(task, *args, **kwargs)
        with lost_connection(f"enqueueing a job of task {call.task!r}", writes=True):
            (job_id,) = await self._store(self.pool, [call])
        return job_id

    async def call_of(
        self, task: Task[Any, Any] | str, /, *args: Any, **kwargs: Any
    ) -> TaskCall[Any]:
        """The call `enqueue(task, *args, **kwargs)` stores, for `enqueue_many`: a task's
        `task.call(...)`; for a name this app has no task of, a call with the default
        options its workers recorded as they started (queue, priority, attempts, timeout),
        after the check of `check_task_name` (unless `allow_unknown_tasks`: then an unknown
        name gets asyncjobs' defaults)."""
        # The arguments first: a bad one is told without a round trip.
        call = task_call(self.app.tasks, task, args, kwargs)
        if not isinstance(task, str) or task in self.app.tasks:
            return call
        with lost_connection(f"reading the known task names for {task!r}", writes=False):
            if not self.allow_unknown_tasks:
                await self._task_names.check(self.pool, self.sql, task, self.app.tasks)
            options = await self._task_names.options(self.pool, self.sql, task)
        return call if options is None else call._replace(options=options)

    async def check_task_name(self, name: str) -> None:
        """Raise UnknownTaskError unless this app has a task named `name` or a worker on
        this schema ever had one (close matches are named). Enqueueing by name does this
        (unless `allow_unknown_tasks`); a Task object needs no check."""
        validate_task_name(name)
        if name not in self.app.tasks:
            with lost_connection(f"reading the known task names for {name!r}", writes=False):
                await self._task_names.check(self.pool, self.sql, name, self.app.tasks)

    async def task_options(self, name: str) -> JobOptions | None:
        """The default options of task `name` as the last worker to start with it recorded
        them (its queue, priority, attempts and timeout), or None if no worker has had it.
        A task of this app's own: its options here."""
        validate_task_name(name)
        own = self.app.tasks.get(name)
        if own is not None:
            return own.defaults
        with lost_connection(f"reading the known task names for {name!r}", writes=False):
            return await self._task_names.options(self.pool, self.sql, name)

    @overload
    async def enqueue_tx(
        self,
        conn: Connection,
        task: Task[P, Coroutine[Any, Any, T]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> JobId[T]: ...
    @overload
    async def enqueue_tx(
        self, conn: Connection, task: Task[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> JobId[T]: ...
    @overload
    async def enqueue_tx(
        self, conn: Connection, task: str, /, *args: Any, **kwargs: Any
    ) -> JobId[Any]: ...

    async def enqueue_tx(
        self, conn: Connection, task: Task[Any, Any] | str, /, *args: Any, **kwargs: Any
    ) -> JobId[Any]:
        """Enqueue on your own connection, inside your transaction: the job exists (and
        workers hear of it) only if your transaction commits.

        `conn`: an asyncpg connection, an SQLAlchemy AsyncConnection or AsyncSession, a
        psycopg 3 connection (async, or sync: run in a thread), or Django's connection
        inside `transaction.atomic()`. UnsupportedConnection for anything else;
        NotInTransaction for a connection that would commit the job on its own."""
        call = await self.call_of(task, *args, **kwargs)
        (job_id,) = await self._store(conn, [call])
        return job_id

    async def enqueue_many(self, calls: Iterable[TaskCall[T]]) -> list[JobId[T]]:
        """Enqueue many jobs in one round trip: `enqueue_many([t.call(1), t.call(2)])`; their
        ids in the calls' order (typed with what the tasks return). All or none are stored;
        ConnectionLost as for `enqueue`."""
        batch = calls_list(calls)
        with lost_connection(f"enqueueing {len(batch)} jobs", writes=True):
            return await self._store(self.pool, batch)

    async def enqueue_many_tx(
        self, conn: Connection, calls: Iterable[TaskCall[T]]
    ) -> list[JobId[T]]:
        """`enqueue_many` on your own connection, inside your transaction (the connections
        `enqueue_tx` takes)."""
        return await self._store(conn, calls_list(calls))

    async def _store(self, conn: Connection | Pool, calls: list[TaskCall[Any]]) -> list[JobId[Any]]:
        """Store the calls' jobs (on the pool, or in the caller's transaction), through the
        app's enqueue hooks if it has any; their ids, in order."""
        if isinstance(conn, Pool):
            store = functools.partial(enqueue_calls, conn, self.sql)
        else:
            store = functools.partial(enqueue_in_transaction, conn, self.sql)
        return list(map(JobId, await enqueue_with_hooks(store, calls, self.app.hooks)))

    # -- read -----------------------------------------------------------------------

    @overload
    async def get(self, job_id: JobId[T]) -> Job[T]: ...
    @overload
    async def get(self, job_id: int) -> Job[Any]: ...

    async def get(self, job_id: int) -> Job[Any]:
        """The job's current state, attempts, result and errors; JobNotFound if none."""
        validation.job_id(job_id)
        with lost_connection(f"reading job {job_id}", writes=False):
            row = await self.pool.fetchrow(self.sql.get_job, job_id)
        if row is None:
            raise JobNotFound(f"no job {job_id}: it never existed or was deleted")
        return self._typed(Job.from_row(row))

    async def list_jobs(
        self, state: JobState | str | None = None, limit: int = 50
    ) -> list[Job[Any]]:
        """The newest jobs, optionally of one state."""
        state_name = _state(state).value if state is not None else None
        validation.integer("limit", limit, 0, validation.INT64)
        with lost_connection("listing jobs", writes=False):
            rows = await self.pool.fetch(self.sql.list_jobs, state_name, limit)
        return [Job.from_row(row) for row in rows]

    async def workers(self) -> list[WorkerInfo]:
        """Every worker process that is running (or died less than a minute ago)."""
        with lost_connection("listing workers", writes=False):
            rows = await self.pool.fetch(self.sql.list_workers)
        return [WorkerInfo.from_row(row) for row in rows]

    # -- control --------------------------------------------------------------------

    async def cancel(self, job_id: int) -> bool:
        """Cancel a job; a running attempt stops at once. False if it had already finished."""
        validation.job_id(job_id)
        with lost_connection(f"cancelling job {job_id}", writes=True):
            old = self._found(job_id, await self.pool.fetchval(self.sql.cancel_job, job_id))
        return not JobState(old).finished

    async def requeue(self, job_id: int, *, keep_checkpoint: bool = False) -> bool:
        """Run the job again from attempt 1, now; a running attempt stops at once.
        Its checkpoint is cleared (the job starts from scratch) unless `keep_checkpoint`.
        Returns True (JobNotFound if there is no such job)."""
        validation.job_id(job_id)
        if not isinstance(keep_checkpoint, bool):
            raise ConfigurationError(
                f"keep_checkpoint must be True or False, got {keep_checkpoint!r}"
            )
        try:
            with lost_connection(f"requeueing job {job_id}", writes=True):
                old = await self.pool.fetchval(self.sql.requeue_job, job_id, keep_checkpoint)
                self._found(job_id, old)
        except asyncpg.UniqueViolationError:
            # Its unique key is taken by another active job since it finished.
            with lost_connection(f"reading what holds job {job_id}'s unique key", writes=False):
                row = await self.pool.fetchrow(self.sql.active_job_with_key, job_id)
            if row is None:
                raise
            raise DuplicateJob(row["task"], row["unique_key"], row["id"], row["state"]) from None
        return True

    async def delete(self, job_id: int) -> bool:
        """Delete a job and its record; a running attempt stops at once.
        Returns True (JobNotFound if there is no such job)."""
        validation.job_id(job_id)
        with lost_connection(f"deleting job {job_id}", writes=True):
            self._found(job_id, await self.pool.fetchval(self.sql.delete_job, job_id))
        return True

    def _found(self, job_id: int, old_state: str | None) -> str:
        if old_state is None:
            raise JobNotFound(f"no job {job_id}: it never existed or was deleted")
        return old_state

    async def stop_workers(self, grace: float = 0.0) -> int:
        """Stop every running worker, on every machine; return how many were asked.

        Each takes no new jobs, gives running ones `grace` seconds, then requeues the rest
        (attempt not counted) and exits.
        """
        seconds = validation.seconds("grace", grace)
        with lost_connection("stopping workers", writes=True):
            stopped: int = await self.pool.fetchval(self.sql.stop_workers, seconds)
        return stopped

    async def stop_worker(self, worker_id: uuid.UUID | str, grace: float = 0.0) -> bool:
        """Stop one worker (an id from `workers()`), as `stop_workers` stops them all.
        False if there is no such worker or it was asked to stop already."""
        seconds = validation.seconds("grace", grace)
        try:
            ident = worker_id if isinstance(worker_id, uuid.UUID) else uuid.UUID(str(worker_id))
        except ValueError:
            raise ConfigurationError(
                f"a worker id is a UUID (as workers() lists it), got {worker_id!r}"
            ) from None
        with lost_connection(f"stopping worker {ident}", writes=True):
            stopped: int = await self.pool.fetchval(self.sql.stop_worker, ident, seconds)
        return stopped == 1

    # -- queues ---------------------------------------------------------------------

    async def pause_queue(self, name: str) -> bool:
        """Pause a queue: once this returns, no worker anywhere claims its jobs (they wait;
        running ones finish). Stored, so workers started later honour it too.
        Returns False if it was paused already."""
        validate_queue(name)
        with lost_connection(f"pausing queue {name!r}", writes=True):
            added: bool = await self.pool.fetchval(self.sql.pause_queue, name)
        return added

    async def resume_queue(self, name: str) -> bool:
        """Resume a paused queue: every worker of it is woken at once.
        Returns False if it was not paused."""
        validate_queue(name)
        with lost_connection(f"resuming queue {name!r}", writes=True):
            removed: bool = await self.pool.fetchval(self.sql.resume_queue, name)
        return removed

    async def queues(self) -> list[QueueInfo]:
        """Every queue with unfinished jobs, paused, or served by a worker: its depth by
        state, running count, whether it is paused, its oldest due job's wait."""
        with lost_connection("listing queues", writes=False):
            rows = await self.pool.fetch(self.sql.list_queues)
        return [QueueInfo.from_row(row) for row in rows]

    # -- wait -----------------------------------------------------------------------

    @overload
    async def wait(self, job_id: JobId[T], timeout: float | None = None) -> T: ...
    @overload
    async def wait(self, job_id: int, timeout: float | None = None) -> Any: ...

    async def wait(self, job_id: int, timeout: float | None = None) -> Any:
        """Wait for a job to finish and return its result.

        Raises JobFailed or JobCancelled for those outcomes, JobNotFound if it is (or gets)
        deleted or pruned (the message says which it can be), WaitTimeout after `timeout`
        seconds. Woken by NOTIFY, not by polling.
        """
        validation.job_id(job_id)
        if timeout is not None:
            validation.seconds("timeout", timeout)
        with anyio.move_on_after(math.inf if timeout is None else timeout) as scope:
            while True:
                await self._ensure_listening()
                woken = anyio.Event()
                self._waiters.setdefault(job_id, set()).add(woken)
                try:
                    job = await self._get_waited(job_id)
                    if job.state is JobState.SUCCEEDED:
                        return self._typed(job).result
                    if job.state is JobState.FAILED:
                        raise JobFailed(job_id, job.error)
                    if job.state is JobState.CANCELLED:
                        raise JobCancelled(job_id, job.cancel_reason)
                    await woken.wait()
                finally:
                    waiters = self._waiters.get(job_id, set())
                    waiters.discard(woken)
                    if not waiters:
                        self._waiters.pop(job_id, None)
        assert scope.cancelled_caught
        raise WaitTimeout(f"job {job_id} did not finish within {timeout}s; it goes on")

    def _typed(self, job: Job[Any]) -> Job[Any]:
        """The job with its result as the type its task returns (a datetime, a dataclass...,
        stored as JSON), when this client's app has the task; as stored otherwise."""
        task = self.app.tasks.get(job.task)
        if task is None or task.arguments.load_result is None or job.result is None:
            return job
        try:
            result = task.arguments.load_result(job.result)
        except Exception:  # written by an older version of the task: leave it as it is
            return job
        return dataclasses.replace(job, result=result)

    async def _get_waited(self, job_id: int) -> Job[Any]:
        with lost_connection(f"waiting for job {job_id}", writes=False):
            row = await self.pool.fetchrow(self.sql.get_job, job_id)
            issued = row is not None or await self.pool.fetchval(self.sql.job_id_issued, job_id)
        if row is not None:
            return Job.from_row(row)
        if not issued:
            raise JobNotFound(f"no job {job_id}: no job with this id was ever enqueued")
        retention = self.app.retention
        kept = f" (this app keeps {retention.describe()})" if retention is not None else ""
        raise JobNotFound(
            f"job {job_id} is gone: it finished and was pruned after its retention period"
            f"{kept}, or it was deleted; wait for it sooner, or keep jobs longer with "
            "App(retention=asyncjobs.Retention(...))"
        )

    async def _ensure_listening(self) -> None:
        # No background task: asyncpg calls the NOTIFY callback itself, and a lost
        # connection wakes every waiter, whose next loop reconnects here.
        if self._listen_lock is None:
            self._listen_lock = anyio.Lock()
        async with self._listen_lock:
            retry = RetryDelay()
            while self._listen_conn is None or self._listen_conn.is_closed():
                try:
                    conn = await connect(self._dsn)
                    await conn.add_listener(self.channels.done, self._on_done)
                except (ConnectionFailed, OSError, asyncpg.PostgresError) as exc:
                    delay = retry.next()
                    logger.warning("wait: cannot listen (retrying in %.2fs): %s", delay, exc)
                    await anyio.sleep(delay)
                    continue
                conn.add_termination_listener(self._listen_lost)
                self._listen_conn = conn

    def _on_done(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        for part in str(payload).split(","):
            for event in self._waiters.get(int(part), ()):
                event.set()

    def _listen_lost(self, _conn: object) -> None:
        # A done message may have been missed: every waiter re-reads its job.
        self._listen_conn = None
        for events in self._waiters.values():
            for event in events:
                event.set()

    async def _stop_listening(self) -> None:
        conn, self._listen_conn = self._listen_conn, None
        if conn is not None:
            conn.remove_termination_listener(self._listen_lost)
            await conn.close()


def _state(state: JobState | str) -> JobState:
    try:
        return JobState(state)
    except ValueError:
        names = ", ".join(s.value for s in JobState)
        raise ConfigurationError(f"unknown job state {state!r}: use one of {names}") from None
