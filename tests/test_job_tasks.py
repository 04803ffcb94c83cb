"""The worker's job tasks (worker/job_tasks.py) keep a task group's rules: the block waits
for its tasks, a failing task fails the block, and a cancelled block stops the attempts the
worker's way, so that a shielded wait inside one (a sync job's thread) still holds."""

from __future__ import annotations

import contextvars

import anyio
import anyio.lowlevel
import pytest

from asyncjobs.worker.job_tasks import JobTasks

where: contextvars.ContextVar[str] = contextvars.ContextVar("where", default="unset")


async def test_leaving_the_block_waits_for_every_task() -> None:
    done: list[int] = []

    async def job(n: int) -> None:
        await anyio.sleep(0.01 * n)
        done.append(n)

    async with JobTasks(lambda: None) as tasks:
        for n in range(3):
            tasks.spawn(job(n), f"job {n}")
        assert len(tasks) == 3
    assert sorted(done) == [0, 1, 2] and len(tasks) == 0


async def test_each_task_has_its_own_context() -> None:
    seen: list[str] = []

    async def job(name: str) -> None:
        seen.append(where.get())
        where.set(name)
        await anyio.lowlevel.checkpoint()

    async with JobTasks(lambda: None) as tasks:
        tasks.spawn(job("a"), "a")
    async with JobTasks(lambda: None) as tasks:
        tasks.spawn(job("b"), "b")
    assert seen == ["unset", "unset"] and where.get() == "unset"


async def test_a_failing_task_fails_the_block_after_the_others_stopped() -> None:
    stopping = anyio.Event()
    ended: list[str] = []

    async def slow() -> None:
        await stopping.wait()
        ended.append("slow")

    async def broken() -> None:
        await anyio.sleep(0.01)
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="a bug"):
        async with JobTasks(stopping.set) as tasks:
            tasks.spawn(slow(), "slow")
            tasks.spawn(broken(), "broken")
            await anyio.sleep(30)  # cancelled by the failure
    assert ended == ["slow"]


async def test_a_cancelled_block_stops_the_attempts_and_their_shields_hold() -> None:
    scope = anyio.CancelScope()
    ended: list[str] = []

    async def attempt() -> None:
        with scope:
            await anyio.sleep(30)
        # Like the wait for a sync job's thread: the task must not be cut short here.
        with anyio.CancelScope(shield=True):
            await anyio.sleep(0.05)
        ended.append("after its shielded wait")

    with anyio.move_on_after(0.1) as outer:
        async with JobTasks(scope.cancel) as tasks:
            tasks.spawn(attempt(), "attempt")
            await anyio.sleep(30)
    assert outer.cancelled_caught
    assert ended == ["after its shielded wait"]
