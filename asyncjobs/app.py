"""The App: where tasks are registered and clients and workers come from."""

from __future__ import annotations

import contextlib
import datetime
import os
import sys
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Concatenate, Protocol, Unpack, overload

import anyio

from . import validation
from .cancel import CancelToken
from .db.connections import connect, resolve_dsn
from .db.migrations import migrate
from .db.sql import validate_schema
from .errors import ConfigurationError
from .hooks import Hooks
from .retention import Retention
from .retry import Backoff, exception_types, validate_backoff
from .schedule import Periodic, define
from .tasks import JobOptions, P, R, Task, task_name

if TYPE_CHECKING:
    from .client.client import Client
    from .dashboard.access import Auth
    from .dashboard.app import Dashboard
    from .db.shared_server import SharedServer
    from .job import Job
    from .sync import SyncClient
    from .worker.settings import WorkerOptions
    from .worker.worker import Worker

SCHEMA_ENV = "ASYNCJOBS_SCHEMA"
PROJECT_ENV = "ASYNCJOBS_PROJECT"
_DSN_HINT = "; pass a PostgreSQL URL such as 'postgresql://user:password@host:5432/db'"


class TaskDecorator(Protocol):
    """What `@app.task(...)` with options returns."""

    @overload
    def __call__(self, fn: Callable[Concatenate[CancelToken, P], R], /) -> Task[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> Task[P, R]: ...


class App:
    """A set of tasks and where their jobs are stored.

    The DSN is the argument, else $ASYNCJOBS_DSN, else a private embedded PostgreSQL, where
    the app's project has a database of its own: `name`, else $ASYNCJOBS_PROJECT, else the
    module that made the App (the script's name when it is run as a script). Apps of the
    same name share it. Constructing an App connects to nothing.
    """

    def __init__(
        self,
        dsn: str | None = None,
        *,
        name: str | None = None,
        schema: str | None = None,
        migrate: bool = True,
        retention: Retention | None = Retention(),  # noqa: B008  # frozen, so safe to share
    ) -> None:
        if retention is not None and not isinstance(retention, Retention):
            raise ConfigurationError(
                f"retention must be an asyncjobs.Retention(...) or None, got {retention!r}"
            )
        if dsn is not None and dsn != "":
            validation.text("dsn", dsn, most=10_000, hint=_DSN_HINT)
        if not isinstance(migrate, bool):
            raise ConfigurationError(f"migrate must be True or False, got {migrate!r}")
        self.dsn = dsn
        self.name = validation.text(
            "name", name or os.environ.get(PROJECT_ENV) or _caller_module(), most=1000
        )
        self.schema = validate_schema(schema or os.environ.get(SCHEMA_ENV) or "asyncjobs")
        self.auto_migrate = migrate
        # How long finished jobs are kept before this app's workers delete them; None: forever.
        self.retention = retention
        self.tasks: dict[str, Task[Any, Any]] = {}
        self.schedules: dict[str, Periodic] = {}
        self._embedded: SharedServer | None = None
        self._embedded_dsn = ""
        # User code called on enqueue, around jobs, as workers start and stop (hooks.py).
        self.hooks = Hooks()
        self._embedded_users = 0
        self._embedded_lock: anyio.Lock | None = None

    @overload
    def task(self, fn: Callable[Concatenate[CancelToken, P], R], /) -> Task[P, R]: ...
    @overload
    def task(self, fn: Callable[P, R], /) -> Task[P, R]: ...
    @overload
    def task(
        self,
        *,
        name: str | None = None,
        queue: str = "default",
        priority: int = 0,
        max_attempts: int = 3,
        timeout: float | datetime.timedelta | None = None,
        retry: Backoff | None = None,
        retry_on: type[BaseException] | tuple[type[BaseException], ...] = Exception,
        fail_on: type[BaseException] | tuple[type[BaseException], ...] = (),
        hand_off_after: float | None = None,
    ) -> TaskDecorator: ...

    def task(  # type: ignore[misc]  # mypy can't match the keyword-only overload
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        queue: str = "default",
        priority: int = 0,
        max_attempts: int = 3,
        timeout: float | datetime.timedelta | None = None,
        retry: Backoff | None = None,
        retry_on: type[BaseException] | tuple[type[BaseException], ...] = Exception,
        fail_on: type[BaseException] | tuple[type[BaseException], ...] = (),
        hand_off_after: float | None = None,
    ) -> Any:
        """Register a function (async, or sync to run in a thread) as a task.

        A parameter annotated `CancelToken` (put it first for exact typing of `enqueue`)
        receives the job's token. The name stored with each job defaults to
        `module.qualname`; set `name=` to keep it stable across refactors.

        A failed attempt is retried after `retry` (default `Backoff()`: exponential, full
        jitter, capped at an hour) while attempts remain, if the exception is an instance of
        `retry_on` and not of `fail_on`; otherwise the job fails at once.

        `hand_off_after`: seconds this task's jobs run under their claim before they move to
        their worker's lease (default: the worker's; see README, Long jobs).
        """
        if isinstance(timeout, datetime.timedelta):
            timeout = timeout.total_seconds()
        options = JobOptions(
            queue=queue, priority=priority, max_attempts=max_attempts, timeout=timeout
        )
        validate_backoff(retry)
        if hand_off_after is not None:
            from .worker.settings import MAX_HAND_OFF_AFTER

            hand_off_after = validation.seconds(
                "hand_off_after", hand_off_after, most=MAX_HAND_OFF_AFTER
            )
        retry_types = exception_types("retry_on", retry_on)
        fail_types = exception_types("fail_on", fail_on)

        def register(fn: Callable[..., Any]) -> Task[Any, Any]:
            if not callable(fn):
                raise ConfigurationError(f"@app.task needs a function, got {fn!r}")
            registered: Task[Any, Any] = Task(
                fn,
                name=name or task_name(fn),
                options=options,
                backoff=retry or Backoff(),
                retry_on=retry_types,
                fail_on=fail_types,
                hand_off_after=hand_off_after,
            )
            existing = self.tasks.get(registered.name)
            if existing is not None and existing.fn is not fn:
                raise ConfigurationError(
                    f"two tasks are named {registered.name!r}: give one an explicit name="
                )
            self.tasks[registered.name] = registered
            return registered

        return register if fn is None else register(fn)

    def periodic(
        self,
        cron: str,
        /,
        *,
        name: str | None = None,
        timezone: str = "UTC",
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        missed: str = "once",
        queue: str | None = None,
        priority: int | None = None,
        max_attempts: int | None = None,
        timeout: float | datetime.timedelta | None = None,
    ) -> Callable[[Task[P, R]], Task[P, R]]:
        """Run a task on a cron schedule: put `@app.periodic("*/5 * * * *")` above `@app.task`.

        `cron` has 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds
        first, read in `timezone` (an IANA name). Each tick enqueues one job with `args`,
        `kwargs` and the task's options, overridden by those given here. `missed` is what
        a tick found late (no worker was up) does: "once" runs one job, then the schedule
        goes on from now; "skip" drops ticks more than a minute late. `name` defaults to
        the task's name; give one to run a task on several schedules.
        Workers store these schedules when they start (see README, "Recurring jobs").
        """

        def declare(task: Task[P, R]) -> Task[P, R]:
            if not isinstance(task, Task) or self.tasks.get(task.name) is None:
                raise ConfigurationError(
                    f"@app.periodic needs a task of this app, got {task!r}: put it above @app.task"
                )
            periodic = define(
                name or task.name,
                task,
                cron,
                timezone=timezone,
                args=args,
                kwargs=kwargs,
                missed=missed,
                queue=queue,
                priority=priority,
                max_attempts=max_attempts,
                timeout=timeout,
            )
            if periodic.name in self.schedules:
                raise ConfigurationError(
                    f"two schedules are named {periodic.name!r}: give one an explicit name="
                )
            self.schedules[periodic.name] = periodic
            return task

        return declare

    def client(self, *, allow_unknown_tasks: bool = False) -> Client:
        """A client to enqueue and control jobs: `async with app.client() as client:`.

        `allow_unknown_tasks=True`: enqueue by name tasks that no worker has had yet (see
        `Client`)."""
        from .client.client import Client

        return Client(self, allow_unknown_tasks=allow_unknown_tasks)

    def sync_client(self, *, allow_unknown_tasks: bool = False) -> SyncClient:
        """A client for code without an event loop (Django, Flask, scripts): enqueue,
        enqueue in your own transaction, get a job. See `asyncjobs.SyncClient`."""
        from .sync import SyncClient

        return SyncClient(self, allow_unknown_tasks=allow_unknown_tasks)

    def worker(self, **options: Unpack[WorkerOptions]) -> Worker:
        """A worker running this app's tasks: `async with app.worker(concurrency=10):`.

        The options (concurrency, queues, grace, poll_interval, heartbeat_interval,
        retention, prune, claim_sessions, hand_off_after) and their defaults are those of
        `asyncjobs.worker.settings.WorkerSettings`.
        """
        from .worker.worker import Worker

        return Worker(self, **options)

    def dashboard(
        self,
        *,
        auth: Auth | None = None,
        read_only: bool = False,
        redact: Callable[[Job[Any]], Job[Any]] | None = None,
    ) -> Dashboard:
        """The web dashboard of this app, an ASGI app: `api.mount("/jobs", app.dashboard())`.
        Needs the `dashboard` extra (`pip install asyncjobs[dashboard]`).

        Without `auth` it answers local clients only. `auth(request)` (may be async) returns
        an `asyncjobs.dashboard.Access` (full, read-only, or a list of allowed actions, and
        who it is, for the log of actions) or None to refuse. `read_only` refuses every
        action whatever `auth` says. `redact(job)` returns the job as it may be shown
        (e.g. its arguments and result masked)."""
        try:
            from .dashboard.app import Dashboard
        except ImportError as exc:
            raise ConfigurationError(
                f"the dashboard needs its extra: pip install 'asyncjobs[dashboard]' ({exc})"
            ) from None
        return Dashboard(self, auth=auth, read_only=read_only, redact=redact)

    async def migrate(self) -> list[int]:
        """Create or upgrade the schema; return the migration versions applied now."""
        async with self.database() as dsn:
            conn = await connect(dsn)
            try:
                return await migrate(conn, self.schema)
            finally:
                await conn.close()

    @contextlib.asynccontextmanager
    async def database(self) -> AsyncIterator[str]:
        """Yield the DSN to use, starting the embedded PostgreSQL if there is none.

        On the embedded server the DSN names the project's own database (created if
        needed). The server stays up while any process on the machine uses it, this one
        until its last client and worker are done.
        """
        from .db.shared_server import SharedServer, embedded_data_dir, project_database

        dsn = resolve_dsn(self.dsn)
        # A DSN of the embedded server's socket (passed on by a process that uses it) uses
        # the server too, so it stays up for this process as well.
        data_dir = embedded_data_dir(dsn) if dsn is not None else None
        if dsn is not None and data_dir is None:
            yield dsn
            return
        if self._embedded_lock is None:
            self._embedded_lock = anyio.Lock()
        async with self._embedded_lock:  # a client and a worker may start at once
            if self._embedded is None:
                server = SharedServer(data_dir)
                # In a thread: ~0.05 s when the server runs, seconds when it must start
                # (initdb on first use), which must not stall the event loop.
                try:
                    await anyio.to_thread.run_sync(server.acquire)
                    self._embedded_dsn = (
                        dsn if dsn is not None else await project_database(server.dsn, self.name)
                    )
                except BaseException:
                    server.release()
                    raise
                self._embedded = server
            self._embedded_users += 1
        try:
            yield self._embedded_dsn
        finally:
            self._embedded_users -= 1
            if self._embedded_users == 0 and self._embedded is not None:
                server, self._embedded = self._embedded, None
                server.release()


def _caller_module() -> str:
    """The module that called App(): the project's name on the embedded server."""
    frame = sys._getframe(2)
    module = str(frame.f_globals.get("__name__") or "")
    if module == "__main__":
        # Run as a script, the module a worker imports it as is the file's name.
        path = frame.f_globals.get("__file__")
        module = os.path.splitext(os.path.basename(path))[0] if path else "main"
    return module or "main"
