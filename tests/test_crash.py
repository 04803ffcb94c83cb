"""Crashes with real processes: SIGKILLed workers, poison jobs, SIGTERM, a restarted server."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import asyncpg
import pytest

import asyncjobs
from tests.helpers import workers_up

Spawn = Callable[..., subprocess.Popen[str]]


async def _until_state(
    client: asyncjobs.Client,
    job_id: int,
    predicate: Callable[[asyncjobs.Job], bool],
    timeout: float,
) -> asyncjobs.Job:
    with anyio.fail_after(timeout):
        while True:
            job = await client.get(job_id)
            if predicate(job):
                return job
            await anyio.sleep(0.005)


async def test_sigkilled_workers_job_runs_again_promptly_and_succeeds_once(
    client: asyncjobs.Client, spawn_worker: Spawn
) -> None:
    # Both up before the job: a worker starting under load takes longer than the job runs.
    procs = {proc.pid: proc for proc in (spawn_worker(), spawn_worker())}
    await workers_up(client, 2)
    job_id = await client.enqueue("sleep", 3.0)
    job = await _until_state(client, job_id, lambda j: j.state == "processing", 20)
    holder = {w.id: w.pid for w in await client.workers()}[job.worker_id]
    first = procs.pop(holder)
    (second,) = procs.values()
    killed_at = time.monotonic()
    first.send_signal(signal.SIGKILL)
    job = await _until_state(client, job_id, lambda j: j.attempt == 2, 10)
    requeued_in = time.monotonic() - killed_at
    assert job.state == "processing"
    assert requeued_in < 5, f"took {requeued_in:.2f}s"  # generous: measured in benchmarks/
    assert await client.wait(job_id, timeout=20) == "slept"
    job = await client.get(job_id)
    assert job.state is asyncjobs.JobState.SUCCEEDED and job.attempt == 2
    assert [e["type"] for e in job.errors] == ["WorkerLost"]
    second.terminate()
    assert second.wait(10) == 0


async def test_an_idle_worker_notices_a_peers_crash_while_it_runs_a_job_of_its_own(
    client: asyncjobs.Client, spawn_worker: Spawn
) -> None:
    """The idle worker's lock wait must be on the peer's row, not on its own running job's
    (which comes first in its order here): else the crash waits for the fallback poll."""
    from tests.worker_app import sleep

    slow_poll = ("--poll-interval", "120")
    peer = spawn_worker("--queues", "other", "--concurrency", "1", *slow_poll)
    await workers_up(client, 1)
    theirs = await client.enqueue(sleep.options(queue="other"), 30.0)
    await _until_state(client, theirs, lambda j: j.state == "processing", 20)
    ours = await client.enqueue(sleep.options(priority=5), 30.0)
    watcher = spawn_worker("--queues", "default,other", "--concurrency", "2", *slow_poll)
    await _until_state(client, ours, lambda j: j.state == "processing", 20)
    await anyio.sleep(0.5)  # the watcher is in its lock wait by now
    peer.send_signal(signal.SIGKILL)
    job = await _until_state(client, theirs, lambda j: j.attempt == 2, 10)
    mine = await client.get(ours)
    assert job.state == "processing" and job.worker_id == mine.worker_id
    assert mine.attempt == 1
    watcher.terminate()
    assert watcher.wait(10) == 0


async def test_a_job_that_kills_its_worker_every_time_fails_after_max_attempts(
    client: asyncjobs.Client, spawn_worker: Spawn
) -> None:
    from tests.worker_app import kill_worker, quick

    # By the task itself, not its name: no worker has had it yet.
    poison = await client.enqueue(kill_worker)
    # Jobs running beside the poison one die with its worker too and lose that attempt
    # (as on any queue); with attempts to spare, they still complete.
    fine = [await client.enqueue(quick.options(max_attempts=10), i) for i in range(5)]
    deadline = time.monotonic() + 60
    # Keep a worker alive as a supervisor would: each one the poison job kills is replaced.
    while (await client.get(poison)).state != "failed":
        assert time.monotonic() < deadline, "poison job never failed"
        proc = spawn_worker()
        while proc.poll() is None and (await client.get(poison)).state != "failed":
            await anyio.sleep(0.02)
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)
    job = await client.get(poison)
    assert job.attempt == 3
    assert job.error is not None and "worker lost during attempt 3 of 3" in job.error["message"]
    survivor = spawn_worker()
    assert [await client.wait(i, timeout=30) for i in fine] == list(range(5))
    survivor.terminate()
    survivor.wait(10)


async def test_sigterm_requeues_running_jobs_and_another_worker_completes_them(
    client: asyncjobs.Client, spawn_worker: Spawn
) -> None:
    first = spawn_worker("--concurrency", "10", "--grace", "0.2")
    await workers_up(client, 1)
    ids = [await client.enqueue("sleep", 2.0) for _ in range(5)]
    for job_id in ids:
        await _until_state(client, job_id, lambda j: j.state == "processing", 20)
    first.send_signal(signal.SIGTERM)
    assert first.wait(10) == 0
    for job_id in ids:
        job = await client.get(job_id)
        assert job.state == "queued" and job.attempt == 0, job
    spawn_worker()
    for job_id in ids:
        assert await client.wait(job_id, timeout=30) == "slept"
        assert (await client.get(job_id)).attempt == 1


async def test_second_signal_skips_the_grace(client: asyncjobs.Client, spawn_worker: Spawn) -> None:
    worker = spawn_worker("--grace", "60")
    await workers_up(client, 1)
    job_id = await client.enqueue("sleep", 30.0)
    await _until_state(client, job_id, lambda j: j.state == "processing", 20)
    worker.send_signal(signal.SIGINT)
    await anyio.sleep(0.3)
    assert worker.poll() is None, worker.communicate()[0]  # in its grace
    worker.send_signal(signal.SIGINT)
    assert worker.wait(10) == 0
    assert (await client.get(job_id)).state == "queued"


async def test_a_stop_while_a_claim_is_being_started_gives_its_job_the_grace(
    client: asyncjobs.Client,
    spawn_worker: Spawn,
    admin: asyncpg.Connection,
    pg_dsn: str,
    schema: str,
) -> None:
    """The window between the start committing and the job reaching the worker.

    A lock on the job's row holds the worker's recorder inside its start while SIGINT
    arrives. The
    start must complete and the job get its grace; cancelled instead, the job was left
    'processing' with its row back in the queue, and the worker exited at once."""
    from tests.worker_app import sleep

    job_id = await client.enqueue(sleep, 30.0)  # the task, not its name: no worker had it yet
    locker = await asyncpg.connect(pg_dsn)
    try:
        async with locker.transaction():
            await locker.execute(f'SELECT 1 FROM "{schema}".jobs WHERE id = $1 FOR UPDATE', job_id)
            worker = spawn_worker("--grace", "60")
            with anyio.fail_after(30):
                # Outside the locker's transaction: pg_stat_activity is a per-transaction
                # snapshot. (Its query text is cut at 1 kB: match the start of the statement.)
                # The start's statement, not any other wait of a worker still starting.
                while not await admin.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND query LIKE 'WITH outcome AS%' AND strpos(query, $1) > 0",
                    schema,
                ):
                    await anyio.sleep(0.01)
            worker.send_signal(signal.SIGINT)
            await anyio.sleep(0.3)
    finally:
        await locker.close()
    job = await _until_state(client, job_id, lambda j: j.state == "processing", 20)
    await anyio.sleep(0.3)
    assert worker.poll() is None, worker.communicate()[0]  # the job is in its grace
    assert job.attempt == 1
    worker.send_signal(signal.SIGINT)
    assert worker.wait(10) == 0
    job = await client.get(job_id)
    assert (job.state, job.attempt, job.started_at) == ("queued", 0, None), job


async def test_restarting_postgresql_under_load_loses_nothing() -> None:
    """A private server (its own data dir) so that restarting it disturbs no other test."""
    from asyncjobs.db.embedded import EmbeddedServer

    with tempfile.TemporaryDirectory(prefix="asyncjobs-restart-") as tmp:
        os.chmod(tmp, 0o755)
        server = EmbeddedServer(Path(tmp) / "pg")
        server.start()
        try:
            app = asyncjobs.App(server.dsn, schema="restart")

            @app.task(max_attempts=10, retry=asyncjobs.Backoff(base=0.05, cap=0.5))
            async def work(n: int) -> int:
                await anyio.sleep(0.01)
                return n

            async with app.client() as client:
                ids = await client.enqueue_many(work.call(i) for i in range(300))
            async with app.worker(concurrency=10):
                await anyio.sleep(0.3)
                server.stop()
                await anyio.sleep(0.5)
                server.start()
                async with app.client() as client:
                    more = await client.enqueue_many(work.call(i) for i in range(300, 400))
                    results = [await client.wait(i, timeout=60) for i in ids + more]
                    jobs = await client.list_jobs(limit=1000)
            assert results == list(range(400))
            assert {job.state for job in jobs} == {asyncjobs.JobState.SUCCEEDED}
        finally:
            server.stop()


async def test_a_lost_parked_claim_brings_back_only_stale_rows(
    app: asyncjobs.App,
    client: asyncjobs.Client,
    admin: asyncpg.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Claims of finished jobs stay open for a while (parked) for the next claim to join.
    When their sessions die, their rows come back: the jobs are done and must not run
    again, and the rows must not stay in the queue."""
    from asyncjobs.worker import claims

    # Claims park only while a backlog lasts, for 20 ms: here every claim parks, for a
    # minute, so that the test can kill sessions holding parked claims.
    monkeypatch.setattr(claims, "JOIN_WINDOW", 60.0)
    monkeypatch.setattr(
        claims.ClaimConnections,
        "backlog",
        property(lambda _self: True, lambda _self, _v: None),
        raising=False,
    )
    runs: list[int] = []

    @app.task
    async def note(n: int) -> int:
        runs.append(n)
        return n

    async with app.worker(concurrency=4):
        ids = await client.enqueue_many(note.call(n) for n in range(20))
        assert [await client.wait(i, timeout=20) for i in ids] == list(range(20))
        queue = f'"{app.schema}".queue'
        # Finished, yet their rows are still held: deleted in claims that have not ended.
        assert await admin.fetchval(f"SELECT count(*) FROM {queue}") == 20
        holders = await admin.fetch(
            "SELECT DISTINCT pid FROM pg_locks WHERE relation = $1::regclass "
            "AND mode = 'RowExclusiveLock' AND granted",
            queue,
        )
        assert holders
        for row in holders:
            await admin.execute("SELECT pg_terminate_backend($1)", row["pid"])
        more = await client.enqueue(note, 20)
        assert await client.wait(more, timeout=20) == 20
        with anyio.fail_after(20):
            while await admin.fetchval(f"SELECT count(*) FROM {queue}"):
                await anyio.sleep(0.05)
    assert sorted(runs) == list(range(21))
    jobs = await client.list_jobs(limit=100)
    assert {(job.state, job.attempt) for job in jobs} == {(asyncjobs.JobState.SUCCEEDED, 1)}
