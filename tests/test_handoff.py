"""Long jobs leave their claims (worker/handoff.py): nothing pins the database while they run,
and a dead worker's handed-off jobs still run again at once. Real processes, real kills."""

from __future__ import annotations

import itertools
import shutil
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
from asyncjobs.db.embedded import EmbeddedServer
from tests.helpers import until, workers_up

Spawn = Callable[..., subprocess.Popen[str]]
PROMPT = 3.0  # generous, for a loaded machine; typical figures are in benchmarks/


async def _lease(admin: asyncpg.Connection, schema: str, job_id: int) -> int | None:
    value: int | None = await admin.fetchval(
        f'SELECT lease FROM "{schema}".jobs WHERE id = $1', job_id
    )
    return value


async def _handed_off(admin: asyncpg.Connection, schema: str, job_id: int) -> None:
    """Until the job's attempt is owned by a lease and its queue row is gone for good."""
    with anyio.fail_after(20):
        while await _lease(admin, schema, job_id) is None or await admin.fetchval(
            f'SELECT count(*) FROM "{schema}".queue WHERE job_id = $1', job_id
        ):
            await anyio.sleep(0.01)


async def test_a_long_job_leaves_its_claim_and_pins_nothing(
    app: asyncjobs.App, client: asyncjobs.Client, admin: asyncpg.Connection
) -> None:
    @app.task
    async def long(seconds: float) -> str:
        await anyio.sleep(seconds)
        return "done"

    async with app.worker(hand_off_after=0.2):
        job_id = await client.enqueue(long, 4.0)
        await _handed_off(admin, app.schema, job_id)
        then = await admin.fetchval("SELECT txid_current()")
        await anyio.sleep(2.5)
        # No asyncjobs session of this schema holds a transaction id, or a snapshot taken
        # before `then`, while the job runs on.
        pinned = await admin.fetch(
            "SELECT pid, state, query, backend_xid, backend_xmin FROM pg_stat_activity"
            " WHERE application_name = 'asyncjobs' AND strpos(query, $2) > 0"
            " AND (backend_xid IS NOT NULL OR backend_xmin::text::bigint <= $1)",
            then,
            app.schema,
        )
        assert pinned == []
        assert (await client.get(job_id)).state == "processing"
        assert await client.wait(job_id, timeout=10) == "done"
    assert await _lease(admin, app.schema, job_id) is None


async def test_a_short_job_keeps_the_claim_path(
    app: asyncjobs.App, client: asyncjobs.Client, admin: asyncpg.Connection
) -> None:
    @app.task
    async def short() -> int:
        return 1

    async with app.worker(hand_off_after=5):
        ids = [await client.enqueue(short) for _ in range(20)]
        for job_id in ids:
            assert await client.wait(job_id, timeout=10) == 1
    leased = await admin.fetchval(
        f'SELECT count(*) FROM "{app.schema}".jobs WHERE lease IS NOT NULL'
    )
    assert leased == 0


async def test_sigkill_after_the_hand_off_runs_the_job_again_at_once(
    client: asyncjobs.Client, spawn_worker: Spawn, admin: asyncpg.Connection
) -> None:
    first = spawn_worker("--concurrency", "1", "--hand-off-after", "0.2", "--poll-interval", "120")
    await workers_up(client, 1)
    job_id = await client.enqueue("sleep", 60.0)
    await until(client, job_id, lambda j: j.state == "processing")
    await _handed_off(admin, client.app.schema, job_id)
    second = spawn_worker("--concurrency", "1", "--hand-off-after", "0.2", "--poll-interval", "120")
    await workers_up(client, 2)
    await anyio.sleep(0.5)
    killed = time.monotonic()
    first.send_signal(signal.SIGKILL)
    job = await until(client, job_id, lambda j: j.state == "processing" and j.attempt == 2)
    took = time.monotonic() - killed
    assert took < PROMPT, f"took {took:.2f}s"
    assert [e["type"] for e in job.errors] == ["WorkerLost"]
    await client.cancel(job_id)
    second.terminate()
    assert second.wait(10) == 0


async def test_a_handed_off_job_of_a_worker_that_died_alone_runs_when_a_worker_starts(
    client: asyncjobs.Client, spawn_worker: Spawn, admin: asyncpg.Connection
) -> None:
    only = spawn_worker("--concurrency", "1", "--hand-off-after", "0.2")
    await workers_up(client, 1)
    job_id = await client.enqueue("sleep", 0.5)
    await _handed_off(admin, client.app.schema, job_id)
    only.send_signal(signal.SIGKILL)
    only.wait(10)
    await anyio.sleep(0.5)
    assert (await client.get(job_id)).state == "processing"  # nobody was there to notice
    spawn_worker("--concurrency", "1")
    assert await client.wait(job_id, timeout=30) == "slept"
    job = await client.get(job_id)
    assert job.attempt == 2 and [e["type"] for e in job.errors] == ["WorkerLost"]


async def test_sigterm_hands_back_a_handed_off_job_without_spending_its_attempt(
    client: asyncjobs.Client, spawn_worker: Spawn, admin: asyncpg.Connection
) -> None:
    worker = spawn_worker("--hand-off-after", "0.2", "--grace", "0")
    await workers_up(client, 1)
    job_id = await client.enqueue("sleep", 60.0)
    await _handed_off(admin, client.app.schema, job_id)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(10) == 0
    job = await client.get(job_id)
    assert job.state == "queued" and job.attempt == 0
    assert await _lease(admin, client.app.schema, job_id) is None


async def test_a_lost_lease_session_interrupts_the_job_and_it_runs_again(
    app: asyncjobs.App, client: asyncjobs.Client, admin: asyncpg.Connection
) -> None:
    runs: list[tuple[str, float]] = []

    @app.task
    async def long() -> str:
        runs.append(("start", time.monotonic()))
        try:
            await anyio.sleep(3)
        finally:
            runs.append(("end", time.monotonic()))
        return "done"

    async with app.worker(hand_off_after=0.2):
        job_id = await client.enqueue(long)
        await _handed_off(admin, app.schema, job_id)
        lease = await _lease(admin, app.schema, job_id)
        # The lease session is the one that took the key: the only session waiting on
        # nothing that holds the key's lock and never runs a claim.
        pid = await admin.fetchval(
            "SELECT a.pid FROM pg_stat_activity a WHERE a.application_name = 'asyncjobs'"
            " AND a.query LIKE '%take_worker_key%' OR (a.query LIKE '%UPDATE%' AND"
            " strpos(a.query, $1) > 0 AND a.query LIKE '%SET lease%')",
            app.schema,
        )
        assert pid is not None and lease is not None
        await admin.execute("SELECT pg_terminate_backend($1)", pid)
        assert await client.wait(job_id, timeout=30) == "done"
    # Interrupted, then run again from the start; never two runs at once.
    kinds = [kind for kind, _ in runs]
    assert kinds == ["start", "end", "start", "end"]
    assert runs[1][1] <= runs[2][1]


async def test_a_postgresql_restart_while_a_handed_off_job_runs(
    spawn_worker: Spawn, tmp_path: Path
) -> None:
    """The server restarts under a handed-off job: its worker loses the lease session and
    stops the job at once; the job then runs again to its end, never twice at the same time.
    A private server (its own data dir), so that the restart disturbs no other test."""
    data = Path(tempfile.mkdtemp(prefix="ajho-", dir="/tmp"))
    data.chmod(0o755)
    server = EmbeddedServer(data / "pg")
    await server.astart()
    marks = tmp_path / "marks"
    try:
        app = asyncjobs.App(server.dsn, schema="handoff_restart")
        env = {"ASYNCJOBS_DSN": server.dsn, "ASYNCJOBS_SCHEMA": "handoff_restart"}
        async with app.client() as client:
            procs = [
                spawn_worker("--concurrency", "1", "--hand-off-after", "0.2", env=env)
                for _ in range(2)
            ]
            await workers_up(client, 2)
            job_id = await client.enqueue("async_marked", str(marks), 4.0)
            admin = await asyncpg.connect(server.dsn)
            try:
                await _handed_off(admin, "handoff_restart", job_id)
            finally:
                await admin.close()
            await server.astop()
            await anyio.sleep(0.5)
            await server.astart()
            assert await client.wait(job_id, timeout=60) == "marked"
        runs = [line.split() for line in marks.read_text().splitlines()]
        # Every run ends (stopped or done) before the next one starts.
        kinds = [kind for kind, *_ in runs]
        assert kinds[0] == "start" and kinds[-1] == "end", runs
        for before, after in itertools.pairwise(runs):
            if after[0] == "start":
                assert before[0] in ("stop", "end"), runs
                assert float(before[3]) <= float(after[3]), runs
        assert kinds.count("start") >= 2, "the restart interrupted nothing"
        for proc in procs:
            proc.terminate()
            assert proc.wait(10) == 0
    finally:
        await server.astop()
        shutil.rmtree(data, ignore_errors=True)


async def test_sigkill_around_the_hand_off_runs_the_job_again_at_once(
    client: asyncjobs.Client, spawn_worker: Spawn, tmp_path: Path
) -> None:
    """Killed a few milliseconds either side of a hand-off at once (hand_off_after 0): its
    claim may have committed or not, the key may own the attempt or not; either way exactly
    one owner is left, and the job runs again promptly on the other worker."""
    from tests.worker_app import async_marked

    job_id = await client.enqueue(async_marked.options(max_attempts=20), str(tmp_path / "m"), 60.0)
    last = 0
    for delay in (0.0, 0.002, 0.005, 0.01, 0.03):
        worker = spawn_worker("--concurrency", "1", "--hand-off-after", "0")
        running = await until(client, job_id, lambda j, n=last: _runs_past(j, n))
        spare = spawn_worker("--concurrency", "1", "--hand-off-after", "0")
        await workers_up(client, 2)
        await anyio.sleep(delay)
        killed = time.monotonic()
        worker.kill()
        worker.wait(10)
        again = await until(client, job_id, lambda j, n=running.attempt: _runs_past(j, n))
        took = time.monotonic() - killed
        assert took < PROMPT, f"after {delay}s: took {took:.2f}s"
        last = again.attempt
        # The spare goes too: the next worker finds it gone when it starts, and the job.
        spare.kill()
        spare.wait(10)
    job = await client.get(job_id)
    assert all(e["type"] == "WorkerLost" for e in job.errors)
    await client.cancel(job_id)


def _runs_past(job: asyncjobs.Job, attempt: int) -> bool:
    return job.state == "processing" and job.attempt > attempt


async def test_a_task_sets_its_own_hand_off_after(
    app: asyncjobs.App, client: asyncjobs.Client, admin: asyncpg.Connection
) -> None:
    @app.task(hand_off_after=0.1)
    async def eager() -> None:
        await anyio.sleep(3)

    @app.task
    async def patient() -> None:
        await anyio.sleep(3)

    with pytest.raises(asyncjobs.ConfigurationError, match="hand_off_after"):
        app.task(hand_off_after=60)(patient.fn)
    async with app.worker(hand_off_after=8):
        first, second = await client.enqueue(eager), await client.enqueue(patient)
        with anyio.fail_after(10):
            # (Their claim may be one: it commits once both have left it.)
            while await _lease(admin, app.schema, first) is None:
                await anyio.sleep(0.01)
        assert await _lease(admin, app.schema, second) is None
        await client.cancel(first)
        await client.cancel(second)
