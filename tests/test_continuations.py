"""Continuations (`after=`): a job waits in `awaiting` until its parents succeeded, and is
cancelled (or, by option, runs anyway) when one does not. Every path that ends a job
settles its children, including races with a child's enqueue."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

import anyio
import asyncpg
import pytest

import asyncjobs
from asyncjobs import JobState


async def _state(client: asyncjobs.Client, job_id: int) -> JobState:
    return (await client.get(job_id)).state


async def _until(client: asyncjobs.Client, job_id: int, state: JobState) -> None:
    with anyio.fail_after(15):
        while await _state(client, job_id) is not state:
            await anyio.sleep(0.02)


async def test_child_waits_for_its_parent_then_runs(
    app: asyncjobs.App, client: asyncjobs.Client
) -> None:
    release = anyio.Event()
    ran: list[str] = []

    @app.task
    async def parent() -> str:
        await release.wait()
        ran.append("parent")
        return "p"

    @app.task
    async def child(x: int) -> int:
        ran.append("child")
        return x

    async with app.worker(concurrency=4):
        p = await client.enqueue(parent)
        c = await client.enqueue(child.options(after=p), 7)
        await _until(client, p, JobState.PROCESSING)
        job = await client.get(c)
        assert job.state is JobState.AWAITING and job.parents == [p]
        release.set()
        assert await client.wait(c, timeout=10) == 7
    assert ran == ["parent", "child"]


async def test_failed_parent_cancels_the_child_with_a_reason(
    app: asyncjobs.App, client: asyncjobs.Client
) -> None:
    @app.task(max_attempts=1)
    async def broken() -> None:
        raise ValueError("no")

    @app.task
    async def child() -> None: ...

    p = await client.enqueue(broken)
    c = await client.enqueue(child.options(after=p))
    async with app.worker():
        with pytest.raises(asyncjobs.JobCancelled):
            await client.wait(c, timeout=10)
    job = await client.get(c)
    assert job.state is JobState.CANCELLED and job.attempt == 0
    assert job.error is not None and job.error["type"] == "ParentNotSucceeded"
    assert job.error["message"] == f"parent job {p} failed; this job was cancelled"
    assert job.finished_at is not None


async def test_run_anyway_runs_after_a_failed_parent(
    app: asyncjobs.App, client: asyncjobs.Client
) -> None:
    @app.task(max_attempts=1)
    async def broken() -> None:
        raise ValueError("no")

    @app.task
    async def cleanup() -> str:
        return "cleaned"

    p = await client.enqueue(broken)
    c = await client.enqueue(cleanup.options(after=p, on_parent_failure="run"))
    async with app.worker():
        assert await client.wait(c, timeout=10) == "cleaned"
    assert await _state(client, p) is JobState.FAILED


async def test_fan_in_runs_only_after_every_parent(
    app: asyncjobs.App, client: asyncjobs.Client
) -> None:
    gates = {1: anyio.Event(), 2: anyio.Event(), 3: anyio.Event()}

    @app.task
    async def part(n: int) -> int:
        await gates[n].wait()
        return n

    @app.task
    async def combine() -> str:
        return "done"

    async with app.worker(concurrency=5):
        parts = [await client.enqueue(part, n) for n in (1, 2, 3)]
        total = await client.enqueue(combine.options(after=parts))
        assert (await client.get(total)).parents == sorted(parts)
        for n in (1, 2):
            gates[n].set()
            await client.wait(parts[n - 1], timeout=10)
            assert await _state(client, total) is JobState.AWAITING
        gates[3].set()
        assert await client.wait(total, timeout=10) == "done"


async def test_chain_cascades_on_success_and_on_failure(
    app: asyncjobs.App, client: asyncjobs.Client
) -> None:
    order: list[str] = []

    @app.task
    async def step(name: str) -> None:
        order.append(name)

    @app.task(max_attempts=1)
    async def broken() -> None:
        raise ValueError("no")

    a = await client.enqueue(step, "a")
    b = await client.enqueue(step.options(after=a), "b")
    c = await client.enqueue(step.options(after=b), "c")
    x = await client.enqueue(broken)
    y = await client.enqueue(step.options(after=x), "y")
    z = await client.enqueue(step.options(after=y), "z")
    anyway = await client.enqueue(step.options(after=y, on_parent_failure="run"), "anyway")
    async with app.worker(concurrency=4):
        await client.wait(c, timeout=10)
        assert await client.wait(anyway, timeout=10) is None
        for job_id in (y, z):
            with pytest.raises(asyncjobs.JobCancelled):
                await client.wait(job_id, timeout=10)
    assert order.index("a") < order.index("b") < order.index("c")
    assert "y" not in order and "z" not in order
    z_error = (await client.get(z)).error
    assert z_error is not None and z_error["message"].startswith(f"parent job {y} was cancelled")


async def test_a_long_chain_cascades_without_deep_recursion(
    app: asyncjobs.App, client: asyncjobs.Client
) -> None:
    @app.task
    async def link(n: int) -> None: ...

    head = await client.enqueue(link.options(delay=3600), 0)
    ids = [head]
    for n in range(1, 301):
        ids.append(await client.enqueue(link.options(after=ids[-1]), n))
    assert await client.cancel(head)
    states = {job.state for job in [await client.get(i) for i in ids[1:]]}
    assert states == {JobState.CANCELLED}


async def test_cancel_and_delete_of_a_parent_settle_its_children(
    app: asyncjobs.App, client: asyncjobs.Client
) -> None:
    @app.task
    async def later() -> None: ...

    p1 = await client.enqueue(later.options(delay=3600))
    p2 = await client.enqueue(later.options(delay=3600))
    c1 = await client.enqueue(later.options(after=p1))
    c2 = await client.enqueue(later.options(after=p2))
    c2_anyway = await client.enqueue(later.options(after=p2, on_parent_failure="run"))
    await client.cancel(p1)
    await client.delete(p2)
    error = (await client.get(c1)).error
    assert error is not None and error["message"].startswith(f"parent job {p1} was cancelled")
    error = (await client.get(c2)).error
    assert error is not None and error["message"].startswith(f"parent job {p2} was deleted")
    assert await _state(client, c2_anyway) is JobState.QUEUED
    # Cancelling an awaiting child itself works as for any job.
    p3 = await client.enqueue(later.options(delay=3600))
    c3 = await client.enqueue(later.options(after=p3))
    assert await client.cancel(c3)
    assert await _state(client, c3) is JobState.CANCELLED


async def test_child_of_an_already_finished_parent_does_not_wait(
    app: asyncjobs.App, client: asyncjobs.Client
) -> None:
    @app.task(max_attempts=1)
    async def outcome(ok: bool) -> None:
        if not ok:
            raise ValueError("no")

    @app.task
    async def child() -> str:
        return "ran"

    good = await client.enqueue(outcome, True)
    bad = await client.enqueue(outcome, False)
    async with app.worker():
        await client.wait(good, timeout=10)
        with pytest.raises(asyncjobs.JobFailed):
            await client.wait(bad, timeout=10)
        after_good = await client.enqueue(child.options(after=good))
        after_bad = await client.enqueue(child.options(after=bad))
        anyway = await client.enqueue(child.options(after=[good, bad], on_parent_failure="run"))
        assert await _state(client, after_bad) is JobState.CANCELLED
        assert await client.wait(after_good, timeout=10) == "ran"
        assert await client.wait(anyway, timeout=10) == "ran"


async def test_unknown_parent_is_a_clear_error_and_stores_nothing(
    app: asyncjobs.App, client: asyncjobs.Client
) -> None:
    @app.task
    async def child() -> None: ...

    real = await client.enqueue(child)
    with pytest.raises(
        asyncjobs.JobNotFound, match="cannot enqueue after job 999998, 999999"
    ) as raised:
        await client.enqueue_many(
            [child.call(), child.options(after=[real, 999999, 999998]).call()]
        )
    assert "nothing was enqueued" in str(raised.value)
    assert [job.id for job in await client.list_jobs()] == [real]
    assert (await client.get(real)).state is JobState.QUEUED


async def test_enqueue_many_and_enqueue_tx_take_parents(
    app: asyncjobs.App, client: asyncjobs.Client, pg_dsn: str
) -> None:
    @app.task
    async def work(n: int) -> int:
        return n

    conn = await asyncpg.connect(pg_dsn)
    try:
        async with conn.transaction():
            # A parent enqueued in the same transaction can be waited on at once.
            parent = await client.enqueue_tx(conn, work, 0)
            child = await client.enqueue_tx(conn, work.options(after=parent), 1)
            many = await client.enqueue_many_tx(
                conn, [work.options(after=[parent, child]).call(n) for n in range(2, 50)]
            )
    finally:
        await conn.close()
    assert await _state(client, many[0]) is JobState.AWAITING
    async with app.worker(concurrency=10):
        assert [await client.wait(i, timeout=10) for i in many] == list(range(2, 50))


async def test_unique_continuation_returns_the_waiting_job(
    app: asyncjobs.App, client: asyncjobs.Client
) -> None:
    @app.task
    async def later() -> None: ...

    parent = await client.enqueue(later.options(delay=3600))
    child = await client.enqueue(later.options(after=parent, unique_key="k"))
    assert await client.enqueue(later.options(after=parent, unique_key="k")) == child
    # A job whose key equals its own parent's: the parent is the active job with that key.
    keyed_parent = await client.enqueue(later.options(unique_key="same", delay=3600))
    assert await client.enqueue(later.options(after=keyed_parent, unique_key="same")) == (
        keyed_parent
    )
    await client.cancel(parent)
    assert await _state(client, child) is JobState.CANCELLED
    assert await client.enqueue(later.options(unique_key="k")) != child


async def test_child_enqueued_while_its_parent_finishes_is_never_stuck(
    app: asyncjobs.App, client: asyncjobs.Client
) -> None:
    """Parents finish on a busy worker while their children are enqueued, singly and
    fan-in over pairs: every child must run, whichever transaction came first."""

    @app.task
    async def quick(n: int) -> int:
        return n

    async with app.worker(concurrency=20):
        parents = [await client.enqueue(quick, n) for n in range(150)]
        children = []
        for n, parent in enumerate(parents):
            children.append(await client.enqueue(quick.options(after=parent), 1000 + n))
            if n:
                pair = [parents[n - 1], parent]
                children.append(await client.enqueue(quick.options(after=pair), 2000 + n))
        with anyio.fail_after(60):
            for child in children:
                await client.wait(child, timeout=30)


async def test_parent_finishing_waits_for_a_child_enqueue_in_an_open_transaction(
    app: asyncjobs.App, client: asyncjobs.Client, pg_dsn: str
) -> None:
    """Lock order, both ways: the child's transaction holds its parent's row until it
    commits, so the parent's outcome is written after and finds the child; a parent that
    ends first is seen ended by a child enqueue that waited for it."""

    @app.task
    async def quick() -> str:
        return "ok"

    parent = await client.enqueue(quick)
    conn = await asyncpg.connect(pg_dsn)
    try:
        # The child's transaction takes the parent's row before any worker runs (a worker
        # started first may finish the parent before the enqueue).
        tx = conn.transaction()
        await tx.start()
        child = await client.enqueue_tx(conn, quick.options(after=parent))
        async with app.worker():
            try:
                # The worker cannot start or finish the parent until this commits.
                await anyio.sleep(0.5)
                assert not (await _state(client, parent)).finished
                await tx.commit()
            finally:
                # Else the worker's stop would wait for the lock (it finishes what it began).
                if conn.is_in_transaction():
                    await tx.rollback()
            assert await client.wait(child, timeout=10) == "ok"

        other = await client.enqueue(quick.options(delay=3600))
        async with conn.transaction():
            await conn.execute(f'SELECT "{app.schema}".cancel_job($1)', other)
            async with anyio.create_task_group() as tg:
                late: list[int] = []

                async def enqueue_child() -> None:
                    late.append(await client.enqueue(quick.options(after=other)))

                tg.start_soon(enqueue_child)
                await anyio.sleep(0.3)
                assert not late  # waiting for the cancelling transaction
                await conn.execute("COMMIT")
                await conn.execute("BEGIN")
        assert await _state(client, late[0]) is JobState.CANCELLED
    finally:
        await conn.close()


async def test_a_parent_failed_for_a_lost_worker_cancels_its_child(
    client: asyncjobs.Client, spawn_worker: Callable[..., subprocess.Popen[str]]
) -> None:
    # Tasks of tests/worker_app.py, named here to enqueue them with options.
    stand_ins = asyncjobs.App()
    poison = stand_ins.task(name="kill_worker")(_placeholder)
    quick = stand_ins.task(name="quick")(_placeholder)
    parent = await client.enqueue(poison.options(max_attempts=1))
    child = await client.enqueue(quick.options(after=parent), 1)
    first = spawn_worker()
    first.wait(timeout=30)  # the poison job kills it
    second = spawn_worker()
    try:
        deadline = time.monotonic() + 30
        while (await client.get(parent)).state is not JobState.FAILED:
            assert time.monotonic() < deadline, "the lost parent was not failed"
            await anyio.sleep(0.05)
    finally:
        second.terminate()
        second.wait(timeout=30)
    job = await client.get(child)
    assert job.state is JobState.CANCELLED
    assert job.error is not None and job.error["message"].startswith(f"parent job {parent} failed")


async def _placeholder(*args: object) -> None:
    """Stands in for a task of tests/worker_app.py, to enqueue it with options here."""
