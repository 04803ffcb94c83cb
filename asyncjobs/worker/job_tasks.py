"""The worker's job tasks: a task group for one short task per attempt, without anyio's
per-task cost.

Each attempt runs in a task of its own, so that what the job's code sets in context
variables (a logging context, a span) stays with that job. anyio's task group spawns a
task with a cancel scope, an event and a wrapper coroutine of its own, which costs the
worker about as much as the rest of a no-op job's run (see benchmarks/README.md,
2026-11-30, "the job tasks"); the attempt already runs in its own anyio cancel scope
(`RunningJob.scope`), which is what stops it. So the attempts are plain asyncio tasks,
held here with a task group's rules:

- leaving the block normally waits for every task;
- leaving it by an exception (the worker cancelled from outside) stops every attempt the
  worker's way (`stop_all`: each job's own scope, so that the shielded waits inside it
  hold, such as the wait for a sync job's thread, which keeps its claim held until the
  thread ends) and waits for the tasks, shielded, before the exception goes on;
- a task that raises (a bug in asyncjobs: an attempt's own errors are its outcome)
  cancels the block, and its exception is raised from it once the others are done.

The tasks are never cancelled natively: asyncio's cancel would break those shields.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any

import anyio


class JobTasks:
    """Use as `async with JobTasks(stop_all) as tasks:`; `tasks.spawn(coro, name)` starts one."""

    def __init__(self, stop_all: Callable[[], None]) -> None:
        self._stop_all = stop_all
        self._tasks: set[asyncio.Task[None]] = set()
        self._scope = anyio.CancelScope()
        self._error: BaseException | None = None

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None and self._error is None:
            self._error = error
            self._scope.cancel()

    async def __aenter__(self) -> JobTasks:
        self._scope.__enter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        try:
            with anyio.CancelScope(shield=True):
                while self._tasks:
                    if exc is not None or self._error is not None:
                        self._stop_all()
                    await asyncio.wait(set(self._tasks), return_when=asyncio.FIRST_COMPLETED)
        finally:
            swallowed = self._scope.__exit__(exc_type, exc, tb)
        if self._error is not None:
            raise self._error
        return swallowed
