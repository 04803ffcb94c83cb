"""Event hooks: user code called on enqueue, around and after each job's attempt, and as a
worker starts and stops. Tracing, metrics and error reporting are built on them.

    @app.hooks.on_job_end
    def report(run: asyncjobs.JobRun) -> None:
        if run.outcome == "failed":
            sentry_sdk.capture_message(f"job {run.job_id} failed: {run.error['message']}")

A hook that raises is logged (logger `asyncjobs.hooks`) and never breaks the enqueue, the
job or the worker. Hooks run in the caller's task: a plain hook must not block (it holds
the worker's event loop); a hook may be async, and is then awaited.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, TypeVar

if TYPE_CHECKING:
    from .tasks import TaskCall
    from .worker.worker import Worker

logger = logging.getLogger("asyncjobs.hooks")

JobOutcome: TypeAlias = Literal[
    "succeeded", "failed", "retried", "timed_out", "cancelled", "lost", "discarded", "released"
]
"""How an attempt ended, as hooks and metrics name it:

- `succeeded`; `failed` (no retry follows); `retried` (it raised and runs again later);
- `timed_out`: it ran past its timeout (`JobRun.retry_in` says whether a retry follows);
- `cancelled`: by a user (client, CLI, SQL) or by the job itself (`raise asyncjobs.Cancel`);
- `lost`: its claim or its thread was lost, so another attempt runs it; or its worker died
  (the worker that takes the job over, or rescues it, reports that attempt: see
  `JobRun.reported_by`);
- `discarded`: requeued or deleted while it ran (the change stands, nothing is recorded);
- `released`: handed back by a stopping worker (or a lost lease), the attempt not counted.
"""


@dataclasses.dataclass(slots=True)
class Enqueueing:
    """One call of `enqueue`, `enqueue_many` (or their `_tx` forms), or a schedule's tick, as
    hooks see it.

    `calls` are the jobs' calls (task name, encoded arguments, options), in order;
    `tasks` and `queues` the distinct names among them. `trace_context` is stored with
    every job of the call (an `around_enqueue` hook fills it, e.g. with the W3C
    `traceparent` of its span); `job_ids` is set once they are stored, `error` if the
    enqueue raised."""

    calls: list[TaskCall[Any]]
    tasks: tuple[str, ...]
    queues: tuple[str, ...]
    count: int
    trace_context: dict[str, str] = dataclasses.field(default_factory=dict)
    job_ids: list[int] | None = None
    error: BaseException | None = None


@dataclasses.dataclass(slots=True)
class JobRun:
    """One attempt of a job on a worker, as hooks see it: who it is when it starts, and
    how it ended (`outcome`, `duration`, `error`) by the time `on_job_end` is called.

    An attempt whose worker died is reported once, by the worker that finds it lost (as it
    takes the job over, or rescues the dead worker's jobs): `on_job_end` only, outcome
    `lost`, `reported_by` that worker's id, `worker_id` the dead one's, and `duration` an
    upper bound (from the attempt's start to when it was found lost)."""

    job_id: int
    task: str
    queue: str
    attempt: int
    max_attempts: int
    worker_id: uuid.UUID
    # Seconds from when the job was due to this attempt's start (the server's clock).
    waited: float | None
    # What the enqueue stored (see Enqueueing.trace_context); None if nothing.
    trace_context: dict[str, str] | None
    started_at: float = dataclasses.field(default_factory=time.time)
    outcome: JobOutcome | None = None
    # Seconds the attempt ran; its error (type, message, traceback) when it raised.
    duration: float | None = None
    error: dict[str, Any] | None = None
    # Seconds until the next attempt, when one follows.
    retry_in: float | None = None
    # The worker that reported this attempt for its dead worker (None: its own worker).
    reported_by: uuid.UUID | None = None


Callback = TypeVar("Callback", bound=Callable[..., Any])
EnqueueHook: TypeAlias = Callable[[Enqueueing], Awaitable[None] | None]
JobHook: TypeAlias = Callable[[JobRun], Awaitable[None] | None]
WorkerHook: TypeAlias = Callable[["Worker"], Awaitable[None] | None]
AroundEnqueue: TypeAlias = Callable[[Enqueueing], AbstractAsyncContextManager[Any]]
AroundJob: TypeAlias = Callable[[JobRun], AbstractAsyncContextManager[Any]]


class Hooks:
    """The hooks of an App (`app.hooks`). Each method registers a hook and returns it, so
    it can be a decorator. Hooks run in the order registered; `around_*` hooks are entered
    in that order and left in reverse, like nested `async with` blocks.

    - `on_enqueue(fn)`: `fn(Enqueueing)` after jobs are stored.
    - `around_enqueue(cm)`: `cm(Enqueueing)` is an async context manager around the store.
    - `on_job_start(fn)`: `fn(JobRun)` before an attempt's code runs.
    - `around_job(cm)`: `cm(JobRun)` is an async context manager around the attempt, in the
      job's own task: a context it sets (a span, a contextvar) is the job's.
    - `on_job_end(fn)`: `fn(JobRun)` once the attempt ended, its outcome set.
    - `on_worker_start(fn)`, `on_worker_stop(fn)`: `fn(worker)`.
    """

    def __init__(self) -> None:
        self.enqueue: list[EnqueueHook] = []
        self.enqueue_around: list[AroundEnqueue] = []
        self.job_start: list[JobHook] = []
        self.job_around: list[AroundJob] = []
        self.job_end: list[JobHook] = []
        self.worker_start: list[WorkerHook] = []
        self.worker_stop: list[WorkerHook] = []

    def on_enqueue(self, fn: Callback) -> Callback:
        """Call `fn(Enqueueing)` after each enqueue has stored its jobs."""
        self.enqueue.append(fn)
        return fn

    def around_enqueue(self, fn: Callback) -> Callback:
        """Enter `fn(Enqueueing)`, an async context manager, around each enqueue."""
        self.enqueue_around.append(fn)
        return fn

    def on_job_start(self, fn: Callback) -> Callback:
        """Call `fn(JobRun)` as each attempt starts on a worker."""
        self.job_start.append(fn)
        return fn

    def around_job(self, fn: Callback) -> Callback:
        """Enter `fn(JobRun)`, an async context manager, around each attempt."""
        self.job_around.append(fn)
        return fn

    def on_job_end(self, fn: Callback) -> Callback:
        """Call `fn(JobRun)` as each attempt ends, with its outcome and duration."""
        self.job_end.append(fn)
        return fn

    def on_worker_start(self, fn: Callback) -> Callback:
        """Call `fn(worker)` once a worker has started."""
        self.worker_start.append(fn)
        return fn

    def on_worker_stop(self, fn: Callback) -> Callback:
        """Call `fn(worker)` as a worker stops (after its last job)."""
        self.worker_stop.append(fn)
        return fn

    @property
    def on_enqueues(self) -> bool:
        """Whether any enqueue hook is registered (else enqueues skip them, at no cost)."""
        return bool(self.enqueue or self.enqueue_around)

    @property
    def on_jobs(self) -> bool:
        """Whether any job hook is registered (else attempts skip them, at no cost)."""
        return bool(self.job_start or self.job_around or self.job_end)


async def call_each(hooks: list[Callable[[Any], Any]], event: object) -> None:
    """Call each hook with `event`, awaiting those that are async; log what one raises."""
    for hook in hooks:
        try:
            result = hook(event)
            if result is not None and inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("hook %s raised (ignored)", _name(hook))


class Around:
    """The `around_*` hooks of one event, as one async context manager. A hook that raises
    on the way in is skipped (and logged); on the way out, logged. None of them can change
    what the block raises or swallow it."""

    __slots__ = ("_entered", "_event", "_hooks")

    def __init__(
        self, hooks: list[Callable[[Any], AbstractAsyncContextManager[Any]]], event: object
    ) -> None:
        self._hooks = hooks
        self._event = event
        self._entered: list[AbstractAsyncContextManager[Any]] = []

    async def __aenter__(self) -> None:
        for hook in self._hooks:
            try:
                manager = hook(self._event)
                await manager.__aenter__()
            except Exception:
                logger.exception("hook %s raised on entry (ignored)", _name(hook))
                continue
            self._entered.append(manager)

    async def __aexit__(self, *exc_info: Any) -> None:
        while self._entered:
            manager = self._entered.pop()
            try:
                await manager.__aexit__(*exc_info)
            except Exception as exc:
                # A hook that re-raises the block's own error (a span recording it) is fine.
                if exc is not exc_info[1]:
                    logger.exception("hook %r raised on exit (ignored)", manager)


def _name(hook: object) -> str:
    return getattr(hook, "__qualname__", None) or repr(hook)
