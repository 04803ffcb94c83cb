"""Running jobs: sync jobs in threads, queues taken in the order listed, claim sessions
shared by jobs claimed one at a time, against real PostgreSQL."""

from __future__ import annotations

import anyio
import asyncpg
import pytest

import asyncjobs


async def test_sync_task_runs_in_a_thread(app: asyncjobs.App) -> None:
    import threading

    main = threading.get_ident()

    @app.task
    def where(token: asyncjobs.CancelToken, n: int) -> bool:
        assert not token.cancelled
        return threading.get_ident() != main

    async with app.client() as client, app.worker():
        assert await client.wait(await client.enqueue(where, 1), timeout=10) is True


async def test_a_worker_takes_its_queues_in_the_order_listed(
    app: asyncjobs.App, client: asyncjobs.Client
) -> None:
    order: list[str] = []

    @app.task
    async def mark(name: str) -> None:
        order.append(name)

    # Priority orders jobs within a queue, never across: "later" outranks everything in
    # "first", and still waits for it.
    ids = [
        await client.enqueue(mark.options(queue="later", priority=10), "later-high"),
        await client.enqueue(mark.options(queue="later"), "later-low"),
        await client.enqueue(mark.options(queue="first"), "first-low"),
        await client.enqueue(mark.options(queue="first", priority=1), "first-high"),
        await client.enqueue(mark.options(queue="ignored", priority=99), "ignored"),
    ]
    async with app.worker(concurrency=1, queues=["first", "later"]):
        for job_id in ids[:4]:
            await client.wait(job_id, timeout=10)
    assert order == ["first-high", "first-low", "later-high", "later-low"]
    assert (await client.get(ids[4])).state is asyncjobs.JobState.QUEUED


async def test_jobs_fed_one_at_a_time_share_a_bounded_number_of_claim_sessions(
    app: asyncjobs.App, client: asyncjobs.Client, admin: asyncpg.Connection
) -> None:
    running = 0
    most = 0
    release = anyio.Event()
    runs: list[int] = []

    @app.task
    async def hold(n: int) -> int:
        nonlocal running, most
        running += 1
        most = max(most, running)
        runs.append(n)
        try:
            await release.wait()
        finally:
            running -= 1
        return n

    async with app.worker(concurrency=12, claim_sessions=2):
        ids = []
        for n in range(12):
            ids.append(await client.enqueue(hold, n))
            await anyio.sleep(0.02)  # each one claimed on its own
        with anyio.fail_after(20):
            while running < 12:
                await anyio.sleep(0.01)
        # Sessions holding claims: those that deleted a row of this schema's queue.
        holders = await admin.fetchval(
            "SELECT count(DISTINCT pid) FROM pg_locks WHERE relation = $1::regclass "
            "AND mode = 'RowExclusiveLock' AND granted",
            f'"{app.schema}".queue',
        )
        assert holders <= 2
        release.set()
        assert [await client.wait(i, timeout=20) for i in ids] == list(range(12))
    assert most == 12 and sorted(runs) == list(range(12))
    for job_id in ids:
        assert (await client.get(job_id)).attempt == 1
    with pytest.raises(asyncjobs.ConfigurationError, match="claim_sessions"):
        app.worker(claim_sessions=0)
