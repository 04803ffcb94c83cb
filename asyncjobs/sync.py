"""SyncClient: enqueue from code without an event loop (Django views, Flask, scripts).

A small producer API, not a sync twin of the client: enqueue, enqueue in your own
transaction (a psycopg connection, or Django's inside `transaction.atomic()`), and read a
job. Control, waiting and the rest stay with the async `Client`.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Coroutine, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, overload

import anyio.from_thread

from .client.enqueue import calls_list
from .client.transactions import enqueue_in_transaction_sync
from .errors import ConfigurationError
from .job import JobId
from .tasks import P, Task, TaskCall

if TYPE_CHECKING:
    from anyio.from_thread import BlockingPortal

    from .app import App
    from .client.client import Client
    from .client.transactions import SyncConnection
    from .job import Job

T = TypeVar("T")


class SyncClient:
    """Enqueue and read jobs from sync code: `jobs = app.sync_client()`, then
    `jobs.enqueue(task, ...)`.

    Behind it an async Client runs on an event loop in a thread of its own, started at the
    first call (so a module-level SyncClient costs nothing until it is used, and a process
    forked after creating it starts its own) and stopped by `close()` or at the end of a
    `with` block. Safe to use from many threads at once.
    """

    def __init__(self, app: App, *, allow_unknown_tasks: bool = False) -> None:
        if not isinstance(allow_unknown_tasks, bool):  # as Client would, at the first call
            raise ConfigurationError(
                f"allow_unknown_tasks must be True or False, got {allow_unknown_tasks!r}"
            )
        self.app = app
        self._allow_unknown_tasks = allow_unknown_tasks
        self._lock = threading.Lock()
        self._stack: contextlib.ExitStack | None = None
        self._portal: BlockingPortal | None = None
        self._client: Client | None = None
        self._pid = 0

    def __enter__(self) -> SyncClient:
        self._open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the client and stop its thread; a later call opens them again."""
        with self._lock:
            stack, self._stack = self._stack, None
            self._portal = self._client = None
            if stack is not None and self._pid == os.getpid():
                stack.close()

    def _open(self) -> tuple[BlockingPortal, Client]:
        with self._lock:
            if self._pid != os.getpid():
                # Forked: the parent's thread and connections are not ours.
                self._stack = self._portal = self._client = None
            if self._portal is None or self._client is None:
                with contextlib.ExitStack() as stack:
                    portal = stack.enter_context(anyio.from_thread.start_blocking_portal())
                    client = stack.enter_context(
                        portal.wrap_async_context_manager(
                            self.app.client(allow_unknown_tasks=self._allow_unknown_tasks)
                        )
                    )
                    self._stack = stack.pop_all()
                self._portal, self._client, self._pid = portal, client, os.getpid()
            return self._portal, self._client

    # As Client's: the id carries the task's return type (an async task's is the coroutine
    # it makes, so that overload comes first), for `get()` here and `wait()` on a Client.
    @overload
    def enqueue(
        self, task: Task[P, Coroutine[Any, Any, T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> JobId[T]: ...
    @overload
    def enqueue(self, task: Task[P, T], /, *args: P.args, **kwargs: P.kwargs) -> JobId[T]: ...
    @overload
    def enqueue(self, task: str, /, *args: Any, **kwargs: Any) -> JobId[Any]: ...

    def enqueue(self, task: Task[Any, Any] | str, /, *args: Any, **kwargs: Any) -> JobId[Any]:
        """Enqueue one job and return its id, as `Client.enqueue` does (same errors)."""
        portal, client = self._open()
        job_id: JobId[Any] = portal.call(lambda: client.enqueue(task, *args, **kwargs))
        return job_id

    @overload
    def enqueue_tx(
        self,
        conn: SyncConnection,
        task: Task[P, Coroutine[Any, Any, T]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> JobId[T]: ...
    @overload
    def enqueue_tx(
        self, conn: SyncConnection, task: Task[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> JobId[T]: ...
    @overload
    def enqueue_tx(
        self, conn: SyncConnection, task: str, /, *args: Any, **kwargs: Any
    ) -> JobId[Any]: ...

    def enqueue_tx(
        self, conn: SyncConnection, task: Task[Any, Any] | str, /, *args: Any, **kwargs: Any
    ) -> JobId[Any]:
        """Enqueue on your own connection, inside your transaction, in this thread: the job
        exists (and workers hear of it) only if it commits.

        `conn`: a psycopg 3 connection, or Django's (`django.db.connection`) inside
        `transaction.atomic()`."""
        portal, client = self._open()
        call = portal.call(lambda: client.call_of(task, *args, **kwargs))
        (job_id,) = enqueue_in_transaction_sync(conn, client.sql, [call])
        return JobId(job_id)

    def enqueue_many_tx(self, conn: SyncConnection, calls: Iterable[TaskCall[T]]) -> list[JobId[T]]:
        """Many jobs in one statement on your own connection, inside your transaction; their
        ids in the calls' order."""
        batch = calls_list(calls)
        _, client = self._open()
        return list(map(JobId, enqueue_in_transaction_sync(conn, client.sql, batch)))

    @overload
    def get(self, job_id: JobId[T]) -> Job[T]: ...
    @overload
    def get(self, job_id: int) -> Job[Any]: ...

    def get(self, job_id: int) -> Job[Any]:
        """The job's current state, attempts, result and errors; JobNotFound if none."""
        portal, client = self._open()
        return portal.call(client.get, job_id)
