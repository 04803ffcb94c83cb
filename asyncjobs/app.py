"""The App: where tasks are registered and clients and workers come from."""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any, Concatenate, Protocol, overload

from .cancel import CancelToken
from .connections import connect, resolve_dsn
from .errors import ConfigurationError
from .migrations import migrate
from .retry import Backoff
from .sql import validate_schema
from .tasks import JobOptions, P, R, Task, task_name

if TYPE_CHECKING:
    from .client import Client
    from .embedded import EmbeddedServer
    from .worker import Worker

SCHEMA_ENV = "ASYNCJOBS_SCHEMA"


class TaskDecorator(Protocol):
    """What `@app.task(...)` with options returns."""

    @overload
    def __call__(self, fn: Callable[Concatenate[CancelToken, P], R], /) -> Task[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> Task[P, R]: ...


class App:
    """A set of tasks and where their jobs are stored.

    The DSN is the argument, else $ASYNCJOBS_DSN, else a private embedded PostgreSQL.
    Constructing an App connects to nothing.
    """

    def __init__(
        self,
        dsn: str | None = None,
        *,
        schema: str | None = None,
        migrate: bool = True,
    ) -> None:
        self.dsn = dsn
        self.schema = validate_schema(schema or os.environ.get(SCHEMA_ENV) or "asyncjobs")
        self.auto_migrate = migrate
        self.tasks: dict[str, Task[Any, Any]] = {}
        self._embedded: EmbeddedServer | None = None
        self._embedded_users = 0

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
    ) -> Any:
        """Register a function (async, or sync to run in a thread) as a task.

        A parameter annotated `CancelToken` (put it first for exact typing of `enqueue`)
        receives the job's token. The name stored with each job defaults to
        `module.qualname`; set `name=` to keep it stable across refactors.
        """
        if isinstance(timeout, datetime.timedelta):
            timeout = timeout.total_seconds()
        options = JobOptions(
            queue=queue, priority=priority, max_attempts=max_attempts, timeout=timeout
        )

        def register(fn: Callable[..., Any]) -> Task[Any, Any]:
            if not callable(fn):
                raise ConfigurationError(f"@app.task needs a function, got {fn!r}")
            registered: Task[Any, Any] = Task(
                fn, name=name or task_name(fn), options=options, backoff=retry or Backoff()
            )
            existing = self.tasks.get(registered.name)
            if existing is not None and existing.fn is not fn:
                raise ConfigurationError(
                    f"two tasks are named {registered.name!r}: give one an explicit name="
                )
            self.tasks[registered.name] = registered
            return registered

        return register if fn is None else register(fn)

    def client(self) -> Client:
        """A client to enqueue and control jobs: `async with app.client() as client:`."""
        from .client import Client

        return Client(self)

    def worker(
        self,
        *,
        concurrency: int = 10,
        queues: Sequence[str] | None = None,
        grace: float = 0.0,
        poll_interval: float = 5.0,
        heartbeat_interval: float = 10.0,
        claim_sessions: int | None = None,
    ) -> Worker:
        """A worker running this app's tasks: `async with app.worker(concurrency=10):`.

        `queues` defaults to every queue the app's tasks use (or "default"), taken in the
        order given. On stop, running jobs get `grace` seconds to finish, then are
        interrupted and queued again without spending an attempt. At most `claim_sessions`
        database sessions (default: concurrency, at most 10) hold claim transactions; past
        that, new jobs join the youngest open claim.
        """
        from .worker import Worker

        return Worker(
            self,
            concurrency=concurrency,
            queues=queues,
            grace=grace,
            poll_interval=poll_interval,
            heartbeat_interval=heartbeat_interval,
            claim_sessions=claim_sessions,
        )

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

        The embedded server is shared by this app's clients and workers and stopped when the
        last of them is done (if this process started it).
        """
        dsn = resolve_dsn(self.dsn)
        if dsn is not None:
            yield dsn
            return
        from .embedded import EmbeddedServer

        if self._embedded is None:
            server = EmbeddedServer()
            # Started on this thread on purpose: PostgreSQL is told to die with the thread
            # that spawned it, and the event loop's thread lives as long as we do.
            server.start()
            self._embedded = server
        self._embedded_users += 1
        try:
            yield self._embedded.dsn
        finally:
            self._embedded_users -= 1
            if self._embedded_users == 0:
                server, self._embedded = self._embedded, None
                server.stop()
