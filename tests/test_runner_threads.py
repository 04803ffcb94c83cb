"""A sync job stopped before its thread takes the call (no database: the runner alone).
Its code must never run, and nothing may wait for a thread that will never end: a worker
stopped under load used to hang forever here (the job had been launched, its thread not
yet started, when SIGTERM came)."""

from __future__ import annotations

import threading
from typing import Any

import anyio
import pytest

import asyncjobs
from asyncjobs.cancel import CancelReason
from asyncjobs.worker.attempt import RunningJob
from asyncjobs.worker.runner import JobRunner

APP = asyncjobs.App("postgresql://unused")
CALLS: list[str] = []
GATE = threading.Event()


@APP.task()
def recorded(name: str) -> str:
    CALLS.append(name)
    return name


@APP.task()
def blocking(name: str) -> str:
    CALLS.append(name)
    GATE.wait(10)
    return name


def job(task: str, name: str) -> RunningJob:
    values: dict[str, Any] = {
        "id": 1,
        "entry": 1,
        "attempt": 1,
        "max_attempts": 3,
        "task": task,
        "args": [name],
        "kwargs": {},
        "timeout": None,
        "queue": "default",
        "claim": None,
    }
    return RunningJob(**values)


# A hang is the failure: the wait for the thread is shielded from fail_after.
pytestmark = pytest.mark.timeout(10)


async def test_a_sync_job_stopped_before_its_thread_starts_never_runs() -> None:
    CALLS.clear()
    stopped = job(recorded.name, "stopped")
    stopped.cancel(CancelReason.SHUTDOWN)
    with anyio.fail_after(5):
        outcome = await JobRunner(APP.tasks, concurrency=1).run(stopped)
    assert outcome.kind == "release"
    await anyio.to_thread.run_sync(lambda: None)  # a thread that took the call has run it
    assert CALLS == []


async def test_a_sync_job_stopped_while_waiting_for_a_thread_never_runs() -> None:
    """The runner's threads are all busy; the waiting job is stopped, then they free up."""
    CALLS.clear()
    GATE.clear()
    runner = JobRunner(APP.tasks, concurrency=1)
    busy, waiting = job(blocking.name, "busy"), job(recorded.name, "waiting")
    outcomes: dict[str, str] = {}

    async def run(running: RunningJob, name: str) -> None:
        outcomes[name] = (await runner.run(running)).kind

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run, busy, "busy")
            while CALLS != ["busy"]:
                await anyio.sleep(0.01)
            tg.start_soon(run, waiting, "waiting")
            await anyio.sleep(0.05)
            waiting.cancel(CancelReason.CANCELLED)
            while "waiting" not in outcomes:
                await anyio.sleep(0.01)
            GATE.set()
    assert outcomes == {"busy": "succeeded", "waiting": "discard"}
    assert CALLS == ["busy"]
