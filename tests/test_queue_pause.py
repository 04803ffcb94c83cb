"""Queue pause and resume with real worker processes: a paused queue is claimed by no worker
from the moment pause returns (a claim already running included), its running jobs finish,
a worker started while it is paused honours it, and resume starts its jobs at once."""

from __future__ import annotations

import time

import anyio
import asyncpg
import pytest

import asyncjobs
from asyncjobs.db.sql import render
from tests.helpers import Spawn, run_cli, until, workers_up

# Far beyond the test's waits: whatever starts a job here is pushed, not polled.
SLOW_POLL = ("--poll-interval", "120")


async def _states(client: asyncjobs.Client, ids: list[int]) -> dict[str, int]:
    rows = await client.pool.fetch(
        render(
            "SELECT state, count(*) FROM {schema}.jobs WHERE id = ANY($1) GROUP BY 1",
            client.app.schema,
        ),
        ids,
    )
    return {row["state"]: row["count"] for row in rows}


async def _all_in(client: asyncjobs.Client, ids: list[int], state: str, timeout: float) -> float:
    """Until every job of `ids` is in `state`; the seconds it took."""
    start = time.monotonic()
    with anyio.fail_after(timeout):
        while (await _states(client, ids)).get(state, 0) < len(ids):
            await anyio.sleep(0.01)
    return time.monotonic() - start


async def test_nothing_from_a_paused_queue_starts_on_three_workers_and_resume_starts_it_at_once(
    client: asyncjobs.Client, spawn_worker: Spawn
) -> None:
    from tests.worker_app import quick, sleep

    for _ in range(3):
        spawn_worker("--queues", "default,other", "--concurrency", "4", *SLOW_POLL)
    await workers_up(client, 3)
    running = await client.enqueue(sleep, 1.5)
    await until(client, running, lambda j: j.state == "processing", 20)

    assert await client.pause_queue("default") is True
    assert await client.pause_queue("default") is False  # already paused
    waiting = [await client.enqueue(quick, i) for i in range(12)]
    others = [await client.enqueue(quick.options(queue="other"), i) for i in range(6)]

    # The other queue runs; the paused one's running job finishes; nothing of it starts.
    await _all_in(client, others, "succeeded", 20)
    job = await until(client, running, lambda j: j.state == "succeeded", 20)
    assert job.attempt == 1
    await anyio.sleep(0.5)
    assert await _states(client, waiting) == {"queued": len(waiting)}
    (info,) = [q for q in await client.queues() if q.name == "default"]
    assert info.paused and info.queued == len(waiting) and info.processing == 0
    assert info.oldest_wait is not None and info.oldest_wait > 0.4 and info.workers == 3

    # Resume: woken by push (the fallback poll is 120 s away), every job starts at once.
    assert await client.resume_queue("default") is True
    assert await client.resume_queue("default") is False
    took = await _all_in(client, waiting, "succeeded", 20)
    assert took < 10
    workers = {(await client.get(i)).worker_id for i in waiting}
    assert len(workers) >= 2  # pushed to every worker, not only one


async def test_a_claim_running_when_the_pause_commits_claims_nothing_after_it_returns(
    client: asyncjobs.Client, spawn_worker: Spawn, admin: asyncpg.Connection
) -> None:
    """Three workers drain a backlog; pause lands in the middle. The queue rows nobody had
    claimed when pause returned must all still be there, unclaimed, a while later."""
    from tests.worker_app import sleep

    for _ in range(3):
        spawn_worker("--queues", "default", "--concurrency", "20", *SLOW_POLL)
    await workers_up(client, 3)
    # Not many more: each worker logs a line per job into a pipe nobody reads until the end,
    # and a full pipe would block it.
    ids = await client.enqueue_many(sleep.call(0.1) for _ in range(1200))
    await until(client, ids[150], lambda j: j.state != "queued", 30)
    await client.pause_queue("default")
    # The rows no claim holds (or took) as pause returned: locked here for a moment, and
    # released at once by the rollback.
    schema = client.app.schema
    locking = admin.transaction()
    await locking.start()
    try:
        left = [
            row["job_id"]
            for row in await admin.fetch(
                render("SELECT job_id FROM {schema}.queue FOR UPDATE SKIP LOCKED", schema)
            )
        ]
    finally:
        await locking.rollback()
    assert len(left) > 100  # the pause did land mid-drain
    await anyio.sleep(1.5)
    assert await _states(client, left) == {"queued": len(left)}
    still = await admin.fetchval(
        render("SELECT count(*) FROM {schema}.queue WHERE job_id = ANY($1)", schema), left
    )
    assert still == len(left)
    await client.resume_queue("default")
    await _all_in(client, left, "succeeded", 60)


async def test_a_worker_started_while_the_queue_is_paused_honours_it(
    client: asyncjobs.Client, spawn_worker: Spawn
) -> None:
    from tests.worker_app import quick

    await client.pause_queue("default")
    waiting = [await client.enqueue(quick, i) for i in range(5)]
    spawn_worker("--queues", "default", *SLOW_POLL)
    await workers_up(client, 1)
    await anyio.sleep(1.0)
    assert await _states(client, waiting) == {"queued": 5}
    await client.resume_queue("default")
    await _all_in(client, waiting, "succeeded", 20)


async def test_a_worker_whose_listener_reconnects_honours_a_pause_it_did_not_hear(
    client: asyncjobs.Client, spawn_worker: Spawn, admin: asyncpg.Connection
) -> None:
    """The pause is stored: a worker that missed its NOTIFY (its listener was down) still
    claims nothing from the queue, and the listener's reconnect wakes it to look."""
    from tests.worker_app import quick

    spawn_worker("--queues", "default", *SLOW_POLL)
    await workers_up(client, 1)
    # Every session of the worker's listener goes (all its LISTENing backends).
    await admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE pid <> pg_backend_pid() AND query LIKE 'LISTEN%'"
        " AND datname = current_database()"
    )
    await client.pause_queue("default")
    waiting = [await client.enqueue(quick, i) for i in range(5)]
    await anyio.sleep(1.5)
    assert await _states(client, waiting) == {"queued": 5}
    await client.resume_queue("default")
    await _all_in(client, waiting, "succeeded", 20)


async def test_queues_lists_depth_by_state_running_and_paused(client: asyncjobs.Client) -> None:
    from tests.worker_app import quick

    await client.enqueue(quick, 1)
    await client.enqueue(quick.options(delay=3600), 2)
    await client.enqueue(quick.options(queue="b"), 3)
    await client.pause_queue("idle")
    found = {q.name: q for q in await client.queues()}
    assert set(found) == {"default", "b", "idle"}
    d = found["default"]
    assert (d.queued, d.scheduled, d.awaiting, d.processing, d.paused) == (1, 1, 0, 0, False)
    assert d.oldest_wait is not None and d.oldest_wait >= 0
    idle = found["idle"]
    assert idle.paused and idle.paused_at is not None and idle.oldest_wait is None
    assert idle.queued == 0


async def test_queues_count_a_due_scheduled_job_as_queued(client: asyncjobs.Client) -> None:
    """A delayed job whose time has come keeps the state 'scheduled' until a worker claims it;
    it waits like a queued one, and queue_stats (the metrics) already counts it so."""
    from tests.worker_app import quick

    await client.enqueue(quick.options(delay=0.2), 1)
    await client.enqueue(quick.options(delay=3600), 2)
    (before,) = [q for q in await client.queues() if q.name == "default"]
    assert (before.queued, before.scheduled, before.oldest_wait) == (0, 2, None)
    await anyio.sleep(0.5)
    (after,) = [q for q in await client.queues() if q.name == "default"]
    assert (after.queued, after.scheduled) == (1, 1)
    assert after.oldest_wait is not None and 0.2 <= after.oldest_wait < 60


@pytest.mark.parametrize("name", ["", "has space", "a,b", "x@1", "q" * 65, None, 3])
async def test_invalid_queue_names_are_refused_clearly(
    client: asyncjobs.Client, name: object
) -> None:
    for call in (client.pause_queue, client.resume_queue):
        with pytest.raises(asyncjobs.ConfigurationError, match="invalid queue name"):
            await call(name)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["''", "NULL", "repeat('q', 65)", "'has space'"])
async def test_the_sql_functions_refuse_invalid_queue_names_clearly(
    client: asyncjobs.Client, admin: asyncpg.Connection, schema: str, name: str
) -> None:
    for function in ("pause_queue", "resume_queue"):
        with pytest.raises(asyncpg.InvalidParameterValueError, match="invalid queue name"):
            await admin.fetchval(f'SELECT "{schema}".{function}({name})')
    assert await admin.fetchval(f'SELECT count(*) FROM "{schema}".paused_queues') == 0


async def test_cli_queues_list_pause_resume(client: asyncjobs.Client, env: dict[str, str]) -> None:
    from tests.worker_app import quick

    await client.enqueue(quick, 1)
    done = await run_cli(env, "queues", "pause", "default")
    assert done.returncode == 0 and "queue default paused" in done.stdout
    done = await run_cli(env, "queues", "pause", "default")
    assert "already" in done.stdout
    done = await run_cli(env, "queues", "list")
    assert done.returncode == 0, done.stderr
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("default")]
    assert "paused" in line.split()
    done = await run_cli(env, "queues", "list", "--json")
    assert '"paused":true' in done.stdout
    done = await run_cli(env, "queues", "resume", "default")
    assert done.returncode == 0 and "queue default resumed" in done.stdout
    done = await run_cli(env, "queues", "pause", "bad name")
    assert done.returncode == 1 and "invalid queue name" in done.stderr
