"""Enqueueing: one job or many in one statement, their options and order, on your own
transaction; what a job reads back as, against real PostgreSQL."""

from __future__ import annotations

import dataclasses
import datetime
import json

import asyncpg
import pytest

import asyncjobs
import asyncjobs.serialization


async def test_enqueue_runs_and_wait_returns_result(app: asyncjobs.App) -> None:
    @app.task
    async def add(a: int, b: int) -> int:
        return a + b

    async with app.client() as client, app.worker(concurrency=2):
        job_id = await client.enqueue(add, 2, b=3)
        assert await client.wait(job_id, timeout=10) == 5
        job = await client.get(job_id)
    assert job.state is asyncjobs.JobState.SUCCEEDED
    assert job.attempt == 1
    assert job.args == [2] and job.kwargs == {"b": 3}
    assert job.started_at is not None and job.finished_at is not None


async def test_enqueue_many_is_one_statement_and_keeps_order(
    app: asyncjobs.App, client: asyncjobs.Client
) -> None:
    @app.task
    async def echo(x: int) -> int:
        return x

    ids = await client.enqueue_many(echo.call(i) for i in range(500))
    assert ids == sorted(ids) and len(set(ids)) == 500
    assert all(isinstance(i, asyncjobs.JobId) for i in ids)  # as enqueue's, typed
    async with app.worker(concurrency=20):
        results = [await client.wait(i, timeout=20) for i in ids]
    assert results == list(range(500))


async def test_enqueue_many_stores_each_calls_own_options(
    app: asyncjobs.App, client: asyncjobs.Client, admin: asyncpg.Connection, schema: str
) -> None:
    @app.task(queue="q1", priority=1, max_attempts=2)
    async def work(x: int, y: str = "-") -> None: ...

    run_at = datetime.datetime(2100, 1, 1, tzinfo=datetime.UTC)
    calls = [
        work.call(0),
        work.options(delay=60, priority=5).call(1, y="b"),
        work.options(queue="q2", max_attempts=7, timeout=3).call(2),
        work.options(run_at=run_at, retry=asyncjobs.Backoff(base=2, cap=9)).call(3),
        work.options(priority=1).call(4),  # options equal to the task's, not the same object
    ]
    ids = await client.enqueue_many(calls)
    rows = await admin.fetch(
        f"SELECT args::text, kwargs::text, queue, priority, max_attempts, timeout, state,"
        f' run_at = $2 AS at, backoff::text FROM "{schema}".jobs WHERE id = ANY($1) ORDER BY id',
        ids,
        run_at,
    )
    assert [tuple(r) for r in rows] == [
        ("[0]", "{}", "q1", 1, 2, None, "queued", False, None),
        ("[1]", '{"y": "b"}', "q1", 5, 2, None, "scheduled", False, None),
        ("[2]", "{}", "q2", 1, 7, 3.0, "queued", False, None),
        ("[3]", "{}", "q1", 1, 2, None, "scheduled", True, '{"cap": 9, "base": 2, "jitter": true}'),
        ("[4]", "{}", "q1", 1, 2, None, "queued", False, None),
    ]
    # The same batch with one shared options object each time.
    same = await client.enqueue_many(work.options(delay=60).call(i) for i in range(3))
    states = await admin.fetch(
        f'SELECT state, queue FROM "{schema}".jobs WHERE id = ANY($1) ORDER BY id', same
    )
    assert [tuple(r) for r in states] == [("scheduled", "q1")] * 3


async def test_enqueue_many_keeps_call_order_across_tasks_and_options(
    app: asyncjobs.App, client: asyncjobs.Client, admin: asyncpg.Connection, schema: str
) -> None:
    # A batch goes as its calls' arguments plus one row per distinct (task, options):
    # interleaving them must still give every call its own id, arguments and options.
    @app.task(queue="a")
    async def first(x: str) -> None: ...

    @app.task(queue="b")
    async def second(x: str, y: int = 0) -> None: ...

    urgent = second.options(priority=9)
    # Separators and escapes of JSON and of the encoding travel inside arguments as they are.
    text = 'rs\x1e nl\n tab\t quote" backslash\\ ü'
    calls = []
    for i in range(300):
        match i % 3:
            case 0:
                calls.append(first.call(f"{text}{i}"))
            case 1:
                calls.append(urgent.call(f"{i}", y=i))
            case _:
                calls.append(second.call(f"{i}"))
    ids = await client.enqueue_many(calls)
    assert ids == sorted(ids) and len(set(ids)) == 300
    rows = await admin.fetch(
        f'SELECT id, task, queue, priority, args, kwargs FROM "{schema}".jobs'
        " WHERE id = ANY($1) ORDER BY id",
        ids,
    )
    expected = [
        (
            call.task,
            call.options.queue,
            call.options.priority,
            asyncjobs.serialization.loads(call.args),
            asyncjobs.serialization.loads(call.kwargs),
        )
        for call in calls
    ]
    got = [
        (r["task"], r["queue"], r["priority"], json.loads(r["args"]), json.loads(r["kwargs"]))
        for r in rows
    ]
    assert got == expected
    assert got[0][3] == [f"{text}0"]


async def test_enqueue_many_refuses_arguments_that_are_not_json(
    app: asyncjobs.App, client: asyncjobs.Client, admin: asyncpg.Connection, schema: str
) -> None:
    @app.task
    async def noop(x: int) -> None: ...

    kept = await client.enqueue(noop, 1)
    # Hand-made calls bypass task.call's encoding: the batch fails as a whole, nothing lost.
    forged = asyncjobs.TaskCall(noop.name, b"[1]\x1e[2]", b"{}", noop.defaults)
    with pytest.raises(asyncjobs.SerializationError, match="not JSON text"):
        await client.enqueue_many([noop.call(2), forged])
    with pytest.raises(asyncpg.InvalidTextRepresentationError):
        await client.enqueue_many([asyncjobs.TaskCall(noop.name, b"[1", b"{}", noop.defaults)])
    assert await admin.fetchval(f'SELECT array_agg(id) FROM "{schema}".jobs') == [kept]
    assert await admin.fetchval(f'SELECT count(*) FROM "{schema}".queue') == 1


async def test_transactional_enqueue_commits_and_rolls_back_with_the_caller(
    app: asyncjobs.App, client: asyncjobs.Client, pg_dsn: str
) -> None:
    @app.task
    async def noop() -> None: ...

    conn = await asyncpg.connect(pg_dsn)
    try:
        async with conn.transaction():
            kept = await client.enqueue_tx(conn, noop)
        with pytest.raises(RuntimeError):
            async with conn.transaction():
                dropped = await client.enqueue_tx(conn, noop)
                raise RuntimeError("caller's own work failed")
    finally:
        await conn.close()
    assert (await client.get(kept)).state is asyncjobs.JobState.QUEUED
    with pytest.raises(asyncjobs.JobNotFound):
        await client.get(dropped)


async def test_delay_and_priority(app: asyncjobs.App, client: asyncjobs.Client) -> None:
    order: list[str] = []

    @app.task
    async def mark(name: str) -> None:
        order.append(name)

    later = await client.enqueue(mark.options(delay=0.5), "later")
    assert (await client.get(later)).state is asyncjobs.JobState.SCHEDULED
    low = await client.enqueue(mark.options(priority=-1), "low")
    high = await client.enqueue(mark.options(priority=5), "high")
    async with app.worker(concurrency=1):
        for job_id in (low, high, later):
            await client.wait(job_id, timeout=10)
    assert order == ["high", "low", "later"]
    job = await client.get(later)
    assert job.started_at is not None and job.started_at >= job.run_at


async def test_job_is_a_plain_snapshot(app: asyncjobs.App, client: asyncjobs.Client) -> None:
    @app.task
    async def noop() -> None: ...

    job = await client.get(await client.enqueue(noop))
    assert dataclasses.asdict(job)["task"].endswith("noop")
    with pytest.raises(asyncjobs.JobNotFound):
        await client.get(10**12)
