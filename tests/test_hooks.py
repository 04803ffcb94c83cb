"""Event hooks (asyncjobs/hooks.py): called in order, with the job and its outcome, on an
in-process worker against real PostgreSQL; a hook that raises breaks nothing."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import asyncjobs
from tests.helpers import until


def _record(app: asyncjobs.App) -> list[tuple[str, Any]]:
    """Register a hook of every kind on `app`, each appending (what, event) to the list."""
    seen: list[tuple[str, Any]] = []
    hooks = app.hooks

    @hooks.around_enqueue
    @contextlib.asynccontextmanager
    async def around_enqueue(event: asyncjobs.Enqueueing) -> AsyncIterator[None]:
        seen.append(("enqueue:enter", list(event.job_ids or [])))
        event.trace_context["traceparent"] = (
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        )
        yield
        seen.append(("enqueue:exit", list(event.job_ids or [])))

    hooks.on_enqueue(lambda event: seen.append(("enqueued", event)))
    hooks.on_job_start(lambda run: seen.append(("start", run.outcome)))

    @hooks.around_job
    @contextlib.asynccontextmanager
    async def around_job(run: asyncjobs.JobRun) -> AsyncIterator[None]:
        seen.append(("job:enter", run.outcome))
        yield
        seen.append(("job:exit", run.outcome))

    async def end(run: asyncjobs.JobRun) -> None:  # an async hook is awaited
        await anyio.lowlevel.checkpoint()
        seen.append(("end", run))

    hooks.on_job_end(end)
    hooks.on_worker_start(lambda worker: seen.append(("worker:start", worker.id)))
    hooks.on_worker_stop(lambda worker: seen.append(("worker:stop", worker.id)))
    return seen


async def test_hooks_are_called_in_order_with_the_job_and_its_outcome(
    app: asyncjobs.App,
) -> None:
    seen = _record(app)

    @app.task(queue="mail")
    async def send(to: str) -> str:
        seen.append(("code", to))
        return to

    async with app.client() as client:
        job_id = await client.enqueue(send, "a@example.com")
        assert [what for what, _ in seen] == ["enqueue:enter", "enqueue:exit", "enqueued"]
        enqueued = seen[-1][1]
        assert enqueued.tasks == (send.name,) and enqueued.queues == ("mail",)
        assert enqueued.count == 1 and enqueued.job_ids == [job_id] and enqueued.error is None
        assert seen[1][1] == [job_id]  # set before the around hooks are left
        seen.clear()
        async with app.worker() as worker:
            assert await client.wait(job_id, timeout=10) == "a@example.com"
            await until(client, job_id, lambda _job: any(w == "end" for w, _ in seen))
        assert [what for what, _ in seen] == [
            "worker:start",
            "start",
            "job:enter",
            "code",
            "job:exit",
            "end",
            "worker:stop",
        ]
        assert seen[0][1] == worker.id and seen[-1][1] == worker.id
        # The outcome is set before the around hooks are left, not before the job ran.
        assert seen[2][1] is None and seen[4][1] == "succeeded"
        run = seen[5][1]
        assert isinstance(run, asyncjobs.JobRun)
        assert (run.job_id, run.task, run.queue, run.attempt, run.max_attempts) == (
            job_id,
            send.name,
            "mail",
            1,
            3,
        )
        assert run.worker_id == worker.id and run.outcome == "succeeded" and run.error is None
        assert run.duration is not None and 0 <= run.duration < 5
        assert run.waited is not None and 0 <= run.waited < 30
        # What the enqueue's hook put in the trace context came with the job.
        assert run.trace_context == {
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        }


async def test_enqueue_many_is_one_event_with_the_batch(app: asyncjobs.App) -> None:
    events: list[asyncjobs.Enqueueing] = []
    app.hooks.on_enqueue(events.append)

    @app.task(queue="a")
    async def one(n: int) -> None: ...

    @app.task(queue="b")
    async def two(n: int) -> None: ...

    async with app.client() as client:
        ids = await client.enqueue_many([one.call(1), two.call(2), one.call(3)])
    assert len(events) == 1
    assert events[0].count == 3 and events[0].job_ids == ids
    assert events[0].tasks == (one.name, two.name) and events[0].queues == ("a", "b")


async def test_each_outcome_is_named(app: asyncjobs.App) -> None:
    ends: list[asyncjobs.JobRun] = []
    app.hooks.on_job_end(ends.append)
    started = anyio.Event()

    @app.task(max_attempts=2, retry=asyncjobs.Backoff(base=0.01, cap=0.01))
    async def flaky() -> None:
        raise ValueError("no")

    @app.task(max_attempts=1, timeout=0.05)
    async def slow() -> None:
        await anyio.sleep(10)

    @app.task
    async def gives_up() -> None:
        raise asyncjobs.Cancel("not needed")

    @app.task
    async def waits() -> None:
        started.set()
        await anyio.sleep(30)

    async with app.client() as client, app.worker(concurrency=4):
        ids = [
            await client.enqueue(flaky),
            await client.enqueue(slow),
            await client.enqueue(gives_up),
            waited := await client.enqueue(waits),
        ]
        await started.wait()
        await client.cancel(waited)
        for job_id in ids:
            with pytest.raises((asyncjobs.JobFailed, asyncjobs.JobCancelled)):
                await client.wait(job_id, timeout=10)
        with anyio.fail_after(10):
            while len(ends) < 5:
                await anyio.sleep(0.01)
    outcomes = sorted((run.job_id, run.attempt, run.outcome) for run in ends)
    assert outcomes == [
        (ids[0], 1, "retried"),
        (ids[0], 2, "failed"),
        (ids[1], 1, "timed_out"),
        (ids[2], 1, "cancelled"),
        (ids[3], 1, "cancelled"),
    ]
    retried = next(run for run in ends if run.outcome == "retried")
    assert retried.retry_in is not None and retried.retry_in <= 0.01
    assert retried.error is not None and retried.error["type"] == "ValueError"
    timed_out = next(run for run in ends if run.outcome == "timed_out")
    assert timed_out.error is not None and timed_out.error["type"] == "TimeoutError"
    assert timed_out.retry_in is None


async def test_a_thread_that_runs_on_after_its_job_was_stopped_is_not_reported_as_its_end(
    app: asyncjobs.App, caplog: pytest.LogCaptureFixture
) -> None:
    """A sync job ignores its token and returns (or raises) after a user cancelled, requeued
    or deleted it: what it did is not written (the job's row was changed), so the hooks and
    the log say the attempt was stopped, not that it succeeded or failed."""
    import threading
    import time

    ends: list[asyncjobs.JobRun] = []
    app.hooks.on_job_end(ends.append)
    running = threading.Semaphore(0)

    @app.task
    def stubborn(fail: bool) -> str:
        running.release()
        time.sleep(0.3)
        if fail:
            raise ValueError("after the stop")
        return "done anyway"

    caplog.set_level(logging.INFO, logger="asyncjobs.worker")
    async with app.client() as client, app.worker(concurrency=4):
        ids = [await client.enqueue(stubborn, fail) for fail in (False, True, False, False)]
        for _ in ids:
            await anyio.to_thread.run_sync(running.acquire)
        await client.cancel(ids[0])
        await client.cancel(ids[1])
        await client.delete(ids[2])
        await client.requeue(ids[3])
        with anyio.fail_after(10):
            while len([run for run in ends if run.attempt == 1]) < 4:
                await anyio.sleep(0.01)
        assert await client.wait(ids[3], timeout=10) == "done anyway"
        assert (await client.get(ids[0])).state == "cancelled"
        assert (await client.get(ids[1])).state == "cancelled"
        with pytest.raises(asyncjobs.JobNotFound):
            await client.get(ids[2])
    first = {run.job_id: run.outcome for run in ends if run.attempt == 1 and run.duration}
    assert [first.get(job_id) for job_id in ids[:3]] == ["cancelled", "cancelled", "discarded"]
    # The requeued job: its first attempt discarded, then attempt 1 again, succeeded.
    assert sorted(run.outcome or "" for run in ends if run.job_id == ids[3]) == [
        "discarded",
        "succeeded",
    ]
    stopped = [r.getMessage() for r in caplog.records if "its thread ran on" in r.getMessage()]
    assert len(stopped) == 4, stopped


async def test_a_raising_hook_breaks_nothing(
    app: asyncjobs.App, caplog: pytest.LogCaptureFixture
) -> None:
    def boom(_event: object) -> None:
        raise RuntimeError("hook bug")

    @contextlib.asynccontextmanager
    async def boom_on_entry(_event: object) -> AsyncIterator[None]:
        raise RuntimeError("hook bug on entry")
        yield

    @contextlib.asynccontextmanager
    async def boom_on_exit(_event: object) -> AsyncIterator[None]:
        yield
        raise RuntimeError("hook bug on exit")

    hooks = app.hooks
    for register in (
        hooks.on_enqueue,
        hooks.on_job_start,
        hooks.on_job_end,
        hooks.on_worker_start,
        hooks.on_worker_stop,
    ):
        register(boom)
    for register in (hooks.around_enqueue, hooks.around_job):
        register(boom_on_entry)
        register(boom_on_exit)
    ends: list[asyncjobs.JobRun] = []
    hooks.on_job_end(ends.append)  # after the raising ones: still called

    @app.task
    async def add(a: int, b: int) -> int:
        return a + b

    with caplog.at_level(logging.ERROR, logger="asyncjobs.hooks"):
        async with app.client() as client, app.worker():
            job_id = await client.enqueue(add, 1, 2)
            assert await client.wait(job_id, timeout=10) == 3
            ids = await client.enqueue_many([add.call(2, 3), add.call(3, 4)])
            assert [await client.wait(i, timeout=10) for i in ids] == [5, 7]
    assert [run.outcome for run in ends] == ["succeeded"] * 3
    messages = [record.getMessage() for record in caplog.records]
    assert any("boom_on_entry" in m and "on entry" in m for m in messages)
    assert any("raised on exit" in m for m in messages)
    assert (
        sum("test_a_raising_hook_breaks_nothing.<locals>.boom raised" in m for m in messages) >= 9
    )


async def test_without_hooks_a_job_carries_no_trace_context(
    app: asyncjobs.App, client: asyncjobs.Client, admin: Any
) -> None:
    @app.task
    async def noop() -> None: ...

    job_id = await client.enqueue(noop)
    schema = app.schema
    assert (
        await admin.fetchval(f'SELECT trace_context FROM "{schema}".jobs WHERE id = $1', job_id)
        is None
    )


async def test_a_schedules_tick_goes_through_the_enqueue_hooks(app: asyncjobs.App) -> None:
    events: list[asyncjobs.Enqueueing] = []
    app.hooks.on_enqueue(events.append)

    @app.periodic("* * * * * *")  # every second
    @app.task(queue="ticks")
    async def tick() -> None: ...

    async with app.worker():
        with anyio.fail_after(15):
            while not events:
                await anyio.sleep(0.05)
    assert events[0].tasks == (tick.name,) and events[0].queues == ("ticks",)
    assert events[0].count == 1 and events[0].job_ids is not None
