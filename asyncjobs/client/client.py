"""The client: enqueue jobs, read them, and cancel, requeue or delete them from anywhere."""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, overload

import anyio
import asyncpg

from .. import validation
from ..db.connections import connect
from ..db.migrations import check, migrate
from ..db.pool import Pool, PoolClosed, open_pool
from ..db.sql import Channels, Queries
from ..errors import (
    AsyncJobsError,
    ConfigurationError,
    ConnectionFailed,
    ConnectionLost,
    DuplicateJob,
    JobCancelled,
    JobFailed,
    JobNotFound,
    WaitTimeout,
)
from ..job import Job, JobState, WorkerInfo
from ..retry import RetryDelay
from ..tasks import P, Task, TaskCall
from .enqueue import calls_list, enqueue_with_hooks, task_call
from .schedules import Schedules

if TYPE_CHECKING:
    from ..app import App

logger = logging.getLogger("asyncjobs.client")


class Client:
    """Enqueues and controls jobs. Use as `async with app.client() as client:`."""

    def __init__(self, app: App) -> None:
        self.app = app
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

    @overload
    async def enqueue(self, task: Task[P, Any], /, *args: P.args, **kwargs: P.kwargs) -> int: ...
    @overload
    async def enqueue(self, task: str, /, *args: Any, **kwargs: Any) -> int: ...

    async def enqueue(self, task: Task[Any, Any] | str, /, *args: Any, **kwargs: Any) -> int:
        """Enqueue one job; return its id. Per-call options: `task.options(...)`.

        ConnectionLost (`maybe_stored` True) if the connection broke on the way: the job may
        exist; a `unique_key` makes a retry safe. ConnectionFailed: nothing was stored."""
        call = task_call(self.app.tasks, task, args, kwargs)
        with _lost_connection(f"enqueueing a job of task {call.task!r}", writes=True):
            (job_id,) = await self._store(self.pool, [call])
        return job_id

    @overload
    async def enqueue_tx(
        self, conn: asyncpg.Connection, task: Task[P, Any], /, *args: P.args, **kwargs: P.kwargs
    ) -> int: ...
    @overload
    async def enqueue_tx(
        self, conn: asyncpg.Connection, task: str, /, *args: Any, **kwargs: Any
    ) -> int: ...

    async def enqueue_tx(
        self, conn: asyncpg.Connection, task: Task[Any, Any] | str, /, *args: Any, **kwargs: Any
    ) -> int:
        """Enqueue on your own connection, inside your transaction: the job exists (and
        workers hear of it) only if your transaction commits."""
        (job_id,) = await self._store(conn, [task_call(self.app.tasks, task, args, kwargs)])
        return job_id

    async def enqueue_many(self, calls: Iterable[TaskCall]) -> list[int]:
        """Enqueue many jobs in one round trip: `enqueue_many(t.call(1), t.call(2))`.
        All or none are stored; ConnectionLost as for `enqueue`."""
        batch = calls_list(calls)
        with _lost_connection(f"enqueueing {len(batch)} jobs", writes=True):
            return await self._store(self.pool, batch)

    async def enqueue_many_tx(
        self, conn: asyncpg.Connection, calls: Iterable[TaskCall]
    ) -> list[int]:
        """`enqueue_many` on your own connection, inside your transaction."""
        return await self._store(conn, calls_list(calls))

    async def _store(self, conn: asyncpg.Connection | Pool, calls: list[TaskCall]) -> list[int]:
        """Store the calls' jobs, through the app's enqueue hooks if it has any."""
        return await enqueue_with_hooks(conn, self.sql, calls, self.app.hooks)

    # -- read -----------------------------------------------------------------------

    async def get(self, job_id: int) -> Job:
        """The job's current state, attempts, result and errors; JobNotFound if none."""
        validation.job_id(job_id)
        with _lost_connection(f"reading job {job_id}", writes=False):
            row = await self.pool.fetchrow(self.sql.get_job, job_id)
        if row is None:
            raise JobNotFound(f"no job {job_id}: it never existed or was deleted")
        return Job.from_row(row)

    async def list_jobs(self, state: JobState | str | None = None, limit: int = 50) -> list[Job]:
        """The newest jobs, optionally of one state."""
        state_name = _state(state).value if state is not None else None
        validation.integer("limit", limit, 0, validation.INT64)
        with _lost_connection("listing jobs", writes=False):
            rows = await self.pool.fetch(self.sql.list_jobs, state_name, limit)
        return [Job.from_row(row) for row in rows]

    async def workers(self) -> list[WorkerInfo]:
        """Every worker process that is running (or died less than a minute ago)."""
        return [WorkerInfo.from_row(row) for row in await self.pool.fetch(self.sql.list_workers)]

    # -- control --------------------------------------------------------------------

    async def cancel(self, job_id: int) -> bool:
        """Cancel a job; a running attempt stops at once. False if it had already finished."""
        validation.job_id(job_id)
        with _lost_connection(f"cancelling job {job_id}", writes=True):
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
            with _lost_connection(f"requeueing job {job_id}", writes=True):
                old = await self.pool.fetchval(self.sql.requeue_job, job_id, keep_checkpoint)
                self._found(job_id, old)
        except asyncpg.UniqueViolationError:
            # Its unique key is taken by another active job since it finished.
            row = await self.pool.fetchrow(self.sql.active_job_with_key, job_id)
            if row is None:
                raise
            raise DuplicateJob(row["task"], row["unique_key"], row["id"], row["state"]) from None
        return True

    async def delete(self, job_id: int) -> bool:
        """Delete a job and its record; a running attempt stops at once.
        Returns True (JobNotFound if there is no such job)."""
        validation.job_id(job_id)
        with _lost_connection(f"deleting job {job_id}", writes=True):
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
        with _lost_connection("stopping workers", writes=True):
            stopped: int = await self.pool.fetchval(self.sql.stop_workers, seconds)
        return stopped

    # -- wait -----------------------------------------------------------------------

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
                        return job.result
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

    async def _get_waited(self, job_id: int) -> Job:
        row = await self.pool.fetchrow(self.sql.get_job, job_id)
        if row is not None:
            return Job.from_row(row)
        if not await self.pool.fetchval(self.sql.job_id_issued, job_id):
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


def _lost(exc: BaseException) -> bool:
    """Whether `exc` says the connection broke mid-statement (not that a statement was
    refused, nor that the client was closed)."""
    if isinstance(exc, (AsyncJobsError, PoolClosed)):
        return False
    if isinstance(exc, asyncpg.PostgresConnectionError):  # class 08, and asyncpg's own
        return True
    if isinstance(exc, asyncpg.PostgresError):
        # FATAL: the server ended the session (a shutdown, a terminated backend).
        return getattr(exc, "severity_en", None) in ("FATAL", "PANIC")
    return isinstance(
        exc, (OSError, TimeoutError, asyncpg.InterfaceError, asyncpg.InternalClientError)
    )


@contextlib.contextmanager
def _lost_connection(doing: str, *, writes: bool) -> Iterator[None]:
    """Turn a connection that broke while `doing` into ConnectionLost. After a write, it
    may have committed before the answer was lost: the caller can't know, and is told so."""
    try:
        yield
    except Exception as exc:
        if not _lost(exc):
            raise
        if writes:
            outcome = (
                "it may or may not have been done; check before retrying (an enqueue retried "
                "blindly may make a duplicate job: enqueue with a unique_key to make retries "
                "safe)"
            )
        else:
            outcome = "nothing was changed; retry"
        raise ConnectionLost(
            f"the connection to PostgreSQL was lost while {doing} "
            f"({type(exc).__name__}: {exc}); {outcome}",
            maybe_stored=writes,
        ) from exc
