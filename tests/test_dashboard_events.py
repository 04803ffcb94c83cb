"""The dashboard's live updates on a real server: one listening session however many pages
are open, and a burst of thousands of NOTIFYs coalesced into a few events per page."""

from __future__ import annotations

import time

import anyio
import asyncpg

import asyncjobs
from asyncjobs.dashboard import events as events_module
from asyncjobs.dashboard.events import Events
from asyncjobs.db.sql import Channels


async def test_one_listening_session_for_many_pages_and_bursts_coalesced(
    app: asyncjobs.App, client: asyncjobs.Client, admin: asyncpg.Connection, pg_dsn: str
) -> None:
    channels = Channels.for_schema(app.schema)
    events = Events(channels)
    received: list[list[tuple[float, str]]] = [[] for _ in range(5)]

    async def page(i: int) -> None:
        async for chunk in events.stream(pg_dsn):
            if chunk.startswith("event:"):
                received[i].append((time.monotonic(), chunk.split("data: ")[1].strip()))

    async with anyio.create_task_group() as tg:
        for i in range(5):
            tg.start_soon(page, i)
        with anyio.fail_after(10):
            while not events.listening:
                await anyio.sleep(0.01)
        sessions = await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE $1",
            f'LISTEN "{channels.control}"%',
        )
        assert sessions == 1
        # A drain's worth of traffic: 3,000 finished jobs in 30 statements over ~1.5 s.
        start = time.monotonic()
        for n in range(30):
            await client.pool.execute(
                "SELECT pg_notify($1, g::text) FROM generate_series($2::int, $2::int + 99) AS g",
                channels.done,
                n * 100,
            )
            await anyio.sleep(0.05)
        await client.pool.execute("SELECT pg_notify($1, 'workers')", channels.control)
        burst = time.monotonic() - start
        await anyio.sleep(events_module.COALESCE * 3)
        tg.cancel_scope.cancel()
    for seen in received:
        # At most one event per coalescing window (plus the one open at each end).
        assert 1 <= len(seen) <= burst / events_module.COALESCE + 3, seen
        kinds = set(",".join(kind for _, kind in seen).split(","))
        assert kinds == {"jobs", "workers"}
    assert not events.listening  # the last page gone, the session closes


async def test_a_running_jobs_progress_wakes_its_own_page_by_push(
    app: asyncjobs.App, client: asyncjobs.Client, pg_dsn: str
) -> None:
    # The worker's batched progress write notifies, naming the job: the stream of that
    # job's page gets an event for each write, another job's page gets none, and nothing
    # reads the job on a timer (the events only come while progress is written).
    step = anyio.Event()

    @app.task
    async def stepping(steps: int) -> None:
        job = asyncjobs.current_job()
        for i in range(steps):
            await step.wait()
            job.progress(i / steps, f"step {i}")
            job.log(f"step {i}")

    channels = Channels.for_schema(app.schema)
    events = Events(channels)
    job_id = await client.enqueue(stepping, 1000)
    other = await client.enqueue(stepping.options(queue="elsewhere"), 1)
    seen: dict[int, list[str]] = {job_id: [], other: []}

    async def page(watched: int) -> None:
        async for chunk in events.stream(pg_dsn, watched):
            if chunk.startswith("event:"):
                seen[watched].append(chunk.split("data: ")[1].strip())

    async with app.worker(), anyio.create_task_group() as tg:
        tg.start_soon(page, job_id)
        tg.start_soon(page, other)
        with anyio.fail_after(15):
            while (await client.get(job_id)).state is not asyncjobs.JobState.PROCESSING:
                await anyio.sleep(0.02)
            while not events.listening:
                await anyio.sleep(0.01)
        # Quiet: the job reports nothing, so its page hears nothing.
        await anyio.sleep(events_module.COALESCE * 4)
        assert seen[job_id] == []
        for _ in range(3):
            step.set()
            step = anyio.Event()
            before = len(seen[job_id])
            with anyio.fail_after(10):
                while len(seen[job_id]) == before:
                    await anyio.sleep(0.02)
            assert seen[job_id][-1] == "job"
        tg.cancel_scope.cancel()
    assert seen[other] == []
