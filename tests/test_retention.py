"""Retention: workers delete finished jobs past their age, in batches, one worker at a time,
never an active job; wait() on a pruned job says so. Real PostgreSQL, real worker process."""

from __future__ import annotations

import datetime
import os
import sys
from pathlib import Path

import anyio
import asyncpg
import pytest

import asyncjobs
from asyncjobs.db.sql import Queries
from asyncjobs.worker.pruner import Pruner

ROOT = Path(__file__).resolve().parent.parent
DAY = 86400


async def _age(
    admin: asyncpg.Connection, schema: str, job_id: int, state: str, days: float
) -> None:
    """Make a job look as if it reached `state` `days` ago. Every job the tests age was
    created 60 days ago: created_at grows with the id, as it does for real jobs (retention
    looks at jobs in id order up to the first one created since the cutoff)."""
    await admin.execute(
        f'UPDATE "{schema}".jobs SET state = $2, queue_entry = NULL,'
        f" finished_at = now() - make_interval(secs => $3),"
        f" created_at = now() - interval '60 days' WHERE id = $1",
        job_id,
        state,
        days * DAY,
    )
    await admin.execute(f'DELETE FROM "{schema}".queue WHERE job_id = $1', job_id)


async def _ids(admin: asyncpg.Connection, schema: str) -> set[int]:
    return {r["id"] for r in await admin.fetch(f'SELECT id FROM "{schema}".jobs')}


async def test_workers_prune_only_old_finished_jobs_never_active_ones(
    app: asyncjobs.App, client: asyncjobs.Client, admin: asyncpg.Connection, schema: str
) -> None:
    release = anyio.Event()

    @app.task
    async def noop() -> None: ...

    @app.task(queue="slow")
    async def runs_long() -> None:
        await release.wait()

    aged = {  # state, days since it finished, whether the default retention deletes it
        "succeeded_old": ("succeeded", 1.5, True),
        "succeeded_new": ("succeeded", 0.5, False),
        "failed_old": ("failed", 8, True),
        "failed_new": ("failed", 2, False),  # failed jobs are kept 7 days
        "cancelled_old": ("cancelled", 2, True),
        "cancelled_new": ("cancelled", 0.1, False),
    }
    ids = {name: await client.enqueue(noop) for name in aged}
    for name, (state, days, _) in aged.items():
        await _age(admin, schema, ids[name], state, days)
    queued = await client.enqueue(noop.options(queue="nobody_listens"))
    scheduled = await client.enqueue(noop.options(delay=3600))
    running = await client.enqueue(runs_long)
    # Active jobs with an old finished_at (a requeued job's, were it not cleared): the state
    # alone must keep them.
    for job_id in (queued, scheduled):
        await admin.execute(
            f"UPDATE \"{schema}\".jobs SET finished_at = now() - interval '30 days',"
            " created_at = now() - interval '31 days' WHERE id = $1",
            job_id,
        )
    # A job created (and finished) just now: the walk through older jobs stops at it.
    fresh = await client.enqueue(noop.options(queue="nobody_listens"))
    await admin.execute(
        f"UPDATE \"{schema}\".jobs SET state = 'succeeded', queue_entry = NULL,"
        " finished_at = now() WHERE id = $1",
        fresh,
    )
    retention = asyncjobs.Retention(interval=0.1, batch_size=2)
    async with app.worker(queues=["slow"], retention=retention):
        with anyio.fail_after(10):
            while (await client.get(running)).state is not asyncjobs.JobState.PROCESSING:
                await anyio.sleep(0.02)
        await admin.execute(
            f"UPDATE \"{schema}\".jobs SET finished_at = now() - interval '30 days',"
            " created_at = now() - interval '31 days' WHERE id = $1",
            running,
        )
        doomed = {ids[n] for n, (_, _, deleted) in aged.items() if deleted}
        with anyio.fail_after(10):
            while await _ids(admin, schema) & doomed:
                await anyio.sleep(0.05)
        await anyio.sleep(0.3)  # a few more rounds, to be sure nothing else goes
        release.set()
        await client.wait(running, timeout=10)
    kept = {ids[n] for n, (_, _, deleted) in aged.items() if not deleted}
    assert await _ids(admin, schema) == kept | {queued, scheduled, running, fresh}


async def test_pruning_goes_in_batches_and_one_worker_at_a_time(
    client: asyncjobs.Client, admin: asyncpg.Connection, schema: str
) -> None:
    @client.app.task
    async def noop() -> None: ...

    ids = await client.enqueue_many(noop.call() for _ in range(25))
    for job_id in ids:
        await _age(admin, schema, job_id, "succeeded", 2)
    pruner = Pruner(client.pool, Queries.for_schema(schema), asyncjobs.Retention(batch_size=10))

    # Another worker is pruning (holds the lock): this one leaves it alone.
    locked = await admin.fetchval(f"SELECT pg_try_advisory_lock(hashtext('\"{schema}\".prune'))")
    assert locked
    assert await pruner.prune() is None
    assert len(await _ids(admin, schema)) == 25
    await admin.fetchval(f"SELECT pg_advisory_unlock(hashtext('\"{schema}\".prune'))")

    assert await pruner.prune() == 25  # three statements: 10, 10, 5
    assert await _ids(admin, schema) == set()
    assert await pruner.prune() == 0
    # It let go of the lock: someone else can take it.
    assert await admin.fetchval(f"SELECT pg_try_advisory_lock(hashtext('\"{schema}\".prune'))")


async def test_none_keeps_jobs_forever(
    client: asyncjobs.Client, admin: asyncpg.Connection, schema: str
) -> None:
    @client.app.task
    async def noop() -> None: ...

    old = await client.enqueue(noop)
    await _age(admin, schema, old, "failed", 3650)
    forever = asyncjobs.Retention(succeeded=0, failed=None, cancelled=datetime.timedelta(0))
    assert await Pruner(client.pool, Queries.for_schema(schema), forever).prune() == 0
    assert await _ids(admin, schema) == {old}


async def test_wait_on_a_pruned_job_says_so(
    app: asyncjobs.App, client: asyncjobs.Client, admin: asyncpg.Connection, schema: str
) -> None:
    @app.task
    async def noop() -> None: ...

    job_id = await client.enqueue(noop)
    await _age(admin, schema, job_id, "succeeded", 2)
    assert app.retention is not None
    assert await Pruner(client.pool, Queries.for_schema(schema), app.retention).prune() == 1
    with pytest.raises(asyncjobs.JobNotFound, match="pruned after its retention period") as gone:
        await client.wait(job_id, timeout=5)
    assert "succeeded 1d, failed 7d, cancelled 1d" in str(gone.value)
    with pytest.raises(asyncjobs.JobNotFound, match="no job with this id was ever enqueued"):
        await client.wait(job_id + 1000, timeout=5)


async def test_a_worker_process_prunes_with_cli_settings(
    pg_dsn: str, schema: str, admin: asyncpg.Connection, client: asyncjobs.Client
) -> None:
    env = {
        **os.environ,
        "ASYNCJOBS_DSN": pg_dsn,
        "ASYNCJOBS_SCHEMA": schema,
        "PYTHONPATH": str(ROOT),
    }
    bad = await anyio.run_process(
        [
            sys.executable,
            "-m",
            "asyncjobs",
            "worker",
            "tests.worker_app:app",
            "--keep-failed",
            "soon",
        ],
        cwd=ROOT,
        env=env,
        check=False,
    )
    assert bad.returncode == 2
    assert "'soon' is not a duration: use e.g. 90s, 30m, 12h, 7d or forever" in bad.stderr.decode()

    client.allow_unknown_tasks = True  # enqueued before the worker that has it starts
    job_id = await client.enqueue("quick", 1)
    async with await anyio.open_process(
        [
            sys.executable,
            "-m",
            "asyncjobs",
            "worker",
            "tests.worker_app:app",
            "--keep-succeeded",
            "1s",
            "--prune-interval",
            "0.2",
        ],
        cwd=ROOT,
        env=env,
    ) as proc:
        try:
            assert await client.wait(job_id, timeout=20) == 1
            with anyio.fail_after(20):
                while job_id in await _ids(admin, schema):
                    await anyio.sleep(0.1)
        finally:
            proc.terminate()
            await proc.wait()


def test_invalid_retention_is_rejected() -> None:
    with pytest.raises(asyncjobs.ConfigurationError, match="Retention failed must be seconds"):
        asyncjobs.Retention(failed=-1)
    with pytest.raises(asyncjobs.ConfigurationError, match="Retention succeeded must be seconds"):
        asyncjobs.Retention(succeeded=float("nan"))
    with pytest.raises(asyncjobs.ConfigurationError, match="interval"):
        asyncjobs.Retention(interval=0)
    with pytest.raises(asyncjobs.ConfigurationError, match="batch_size"):
        asyncjobs.Retention(batch_size=0)
    with pytest.raises(asyncjobs.ConfigurationError, match=r"asyncjobs\.Retention"):
        asyncjobs.App("postgresql://unused", retention=3600)  # type: ignore[arg-type]
    assert asyncjobs.Retention(failed=datetime.timedelta(days=2)).failed == 2 * DAY
