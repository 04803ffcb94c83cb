"""Checkpoints (current_job().checkpoint): a long job's next attempt resumes where the last
one was, after a deploy (SIGTERM), a crash (SIGKILL) or a retry; requeue starts over unless
asked to keep it; a stale attempt's checkpoint is dropped. Real worker processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest

import asyncjobs
from tests.helpers import until, workers_up

Spawn = Callable[..., subprocess.Popen[str]]
ROOT = Path(__file__).resolve().parent.parent
# A job's attempt owned by its claim, or handed off to its worker's key (worker/handoff.py).
OWNERS = pytest.mark.parametrize("hand_off_after", ["8", "0.2"], ids=["claimed", "handed-off"])


async def _lease(admin: asyncpg.Connection, schema: str, job_id: int) -> int | None:
    value: int | None = await admin.fetchval(
        f'SELECT lease FROM "{schema}".jobs WHERE id = $1', job_id
    )
    return value


def _done(job: asyncjobs.Job) -> int:
    return int(job.checkpoint["done"]) if isinstance(job.checkpoint, dict) else -1


@OWNERS
async def test_sigterm_with_no_grace_hands_the_job_back_with_its_last_checkpoint(
    client: asyncjobs.Client, spawn_worker: Spawn, admin: asyncpg.Connection, hand_off_after: str
) -> None:
    worker = spawn_worker("--concurrency", "1", "--grace", "0", "--hand-off-after", hand_off_after)
    await workers_up(client, 1)
    job_id = await client.enqueue("count_up", 40, 0.05)
    await until(client, job_id, lambda j: _done(j) >= 3)
    if hand_off_after == "0.2":
        assert await _lease(admin, client.app.schema, job_id) is not None
    worker.send_signal(signal.SIGTERM)
    assert await anyio.to_thread.run_sync(worker.wait, 20) == 0
    job = await client.get(job_id)
    # Saved by the job as it was stopped, written before the job was handed back.
    assert job.state is asyncjobs.JobState.QUEUED and job.attempt == 0
    assert job.checkpoint["stopped"] == 1
    stopped_at = job.checkpoint["done"]
    assert stopped_at >= 3 and job.checkpoint_at is not None

    spawn_worker("--concurrency", "1", "--hand-off-after", hand_off_after)
    result = await client.wait(job_id, timeout=30)
    assert result["done"] == 40
    assert result["starts"] == [0, stopped_at]
    assert (await client.get(job_id)).checkpoint == result  # kept for inspection


@OWNERS
async def test_sigkill_keeps_what_was_written_and_the_next_attempt_resumes_from_it(
    client: asyncjobs.Client, spawn_worker: Spawn, hand_off_after: str
) -> None:
    first = spawn_worker("--concurrency", "1", "--hand-off-after", hand_off_after)
    await workers_up(client, 1)
    job_id = await client.enqueue("count_up", 40, 0.05)
    written = _done(await until(client, job_id, lambda j: _done(j) >= 3))
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    spawn_worker("--concurrency", "1", "--hand-off-after", hand_off_after)
    result = await client.wait(job_id, timeout=30)
    assert result["done"] == 40
    first_start, resumed = result["starts"]
    assert first_start == 0 and resumed >= written
    job = await client.get(job_id)
    assert job.attempt == 2 and [e["type"] for e in job.errors] == ["WorkerLost"]


async def test_a_retry_resumes_from_the_checkpoint(
    app: asyncjobs.App, client: asyncjobs.Client
) -> None:
    @app.task(max_attempts=3, retry=asyncjobs.Backoff(base=0.01, cap=0.01, jitter=False))
    async def flaky() -> list[Any]:
        job = asyncjobs.current_job()
        seen = job.last_checkpoint or []
        job.checkpoint([*seen, job.attempt])
        if job.attempt < 3:
            raise RuntimeError("not yet")
        return list(seen)

    job_id = await client.enqueue(flaky)
    async with app.worker():
        assert await client.wait(job_id, timeout=10) == [1, 2]
    assert (await client.get(job_id)).checkpoint == [1, 2, 3]


async def test_save_checkpoint_returns_once_it_is_stored_and_get_and_jobs_show_see_it(
    app: asyncjobs.App, client: asyncjobs.Client, pg_dsn: str, schema: str
) -> None:
    saved = anyio.Event()
    release = anyio.Event()

    @app.task
    async def pages() -> str:
        job = asyncjobs.current_job()
        assert job.last_checkpoint is None
        await job.save_checkpoint({"page": 7, "cursor": "abc"})
        assert job.last_checkpoint == {"page": 7, "cursor": "abc"}
        saved.set()
        await release.wait()
        job.checkpoint({"page": 8, "cursor": "x" * 500})
        return "done"

    job_id = await client.enqueue(pages)
    async with app.worker():
        with anyio.fail_after(10):
            await saved.wait()
        # No wait for a batch: it was committed before save_checkpoint returned.
        job = await client.get(job_id)
        assert job.checkpoint == {"page": 7, "cursor": "abc"}
        assert job.checkpoint_at is not None
        release.set()
        assert await client.wait(job_id, timeout=10) == "done"
    job = await client.get(job_id)
    assert job.state is asyncjobs.JobState.SUCCEEDED
    assert job.checkpoint == {"page": 8, "cursor": "x" * 500}
    env = {**os.environ, "ASYNCJOBS_DSN": pg_dsn, "ASYNCJOBS_SCHEMA": schema}
    with anyio.fail_after(60):
        done = await anyio.run_process(
            [sys.executable, "-m", "asyncjobs", "jobs", "show", str(job_id)], cwd=ROOT, env=env
        )
        as_json = await anyio.run_process(
            [sys.executable, "-m", "asyncjobs", "jobs", "show", str(job_id), "--json"],
            cwd=ROOT,
            env=env,
        )
    out = done.stdout.decode()
    assert '  checkpoint {"page":8,"cursor":"xxx' in out
    assert "characters; --json shows it whole)" in out
    assert '"cursor": "' + "x" * 500 in as_json.stdout.decode()


async def test_requeue_starts_over_unless_asked_to_keep_the_checkpoint(
    app: asyncjobs.App, client: asyncjobs.Client, admin: asyncpg.Connection, pg_dsn: str
) -> None:
    resumed: list[Any] = []

    @app.task
    async def resumable() -> None:
        job = asyncjobs.current_job()
        resumed.append(job.last_checkpoint)
        job.checkpoint({"run": len(resumed)})

    job_id = await client.enqueue(resumable)
    async with app.worker():
        await client.wait(job_id, timeout=10)
        assert (await client.get(job_id)).checkpoint == {"run": 1}

        assert await client.requeue(job_id)
        assert (await client.get(job_id)).checkpoint is None  # cleared at once
        await until(client, job_id, lambda j: j.state is asyncjobs.JobState.SUCCEEDED)

        assert await client.requeue(job_id, keep_checkpoint=True)
        assert (await client.get(job_id)).checkpoint == {"run": 2}
        await until(client, job_id, lambda j: j.checkpoint == {"run": 3})

        # The SQL function: requeue_job(id) as before, and the option by name.
        await admin.execute(
            f'SELECT "{app.schema}".requeue_job($1, keep_checkpoint => true)', job_id
        )
        await until(client, job_id, lambda j: j.checkpoint == {"run": 4})
        await admin.execute(f'SELECT "{app.schema}".requeue_job($1)', job_id)
        await until(client, job_id, lambda j: j.checkpoint == {"run": 5})

        env = {**os.environ, "ASYNCJOBS_DSN": pg_dsn, "ASYNCJOBS_SCHEMA": app.schema}
        with anyio.fail_after(60):
            done = await anyio.run_process(
                [
                    sys.executable,
                    "-m",
                    "asyncjobs",
                    "jobs",
                    "requeue",
                    str(job_id),
                    "--keep-checkpoint",
                ],
                cwd=ROOT,
                env=env,
            )
        assert done.stdout.decode() == f"job {job_id} requeued, resuming from its checkpoint\n"
        await until(client, job_id, lambda j: j.checkpoint == {"run": 6})
    assert resumed == [None, None, {"run": 2}, {"run": 3}, None, {"run": 5}]
    with pytest.raises(asyncjobs.ConfigurationError, match="keep_checkpoint must be"):
        await client.requeue(job_id, keep_checkpoint="yes")  # type: ignore[arg-type]


async def test_a_stale_attempt_cannot_save_its_checkpoint(
    app: asyncjobs.App, client: asyncjobs.Client
) -> None:
    running = anyio.Event()
    refused: list[BaseException] = []
    attempts: list[Any] = []

    @app.task
    async def stubborn() -> None:
        job = asyncjobs.current_job()
        attempts.append(job.last_checkpoint)
        if len(attempts) > 1:
            return
        await job.save_checkpoint("first")
        running.set()
        try:
            await anyio.sleep(30)
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                job.checkpoint("stale, batched")
                try:
                    await job.save_checkpoint("stale, saved")
                except asyncjobs.AttemptNotCurrent as exc:
                    refused.append(exc)
            raise

    job_id = await client.enqueue(stubborn)
    async with app.worker():
        with anyio.fail_after(10):
            await running.wait()
        assert await client.requeue(job_id)
        await until(client, job_id, lambda j: j.state is asyncjobs.JobState.SUCCEEDED)
        await anyio.sleep(0.6)  # a write interval: nothing stale lands late either
    assert attempts == [None, None]  # the second attempt: requeued, so from scratch
    assert len(refused) == 1 and isinstance(refused[0], asyncjobs.Interrupted)
    assert refused[0].reason is asyncjobs.CancelReason.REQUEUED
    assert "is no longer the job's current attempt (requeued)" in str(refused[0])
    assert (await client.get(job_id)).checkpoint is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (object(), "a checkpoint must be JSON: object cannot be stored"),
        ({"at": float("nan")}, "NaN or infinite float"),
        ("a\x00b", "NUL character"),
        ("x" * (1024 * 1024), "bytes of JSON, over the limit of 1048576"),
    ],
    ids=["object", "nan", "nul", "too-big"],
)
async def test_a_bad_checkpoint_fails_at_the_call(
    app: asyncjobs.App, client: asyncjobs.Client, value: object, message: str
) -> None:
    @app.task(max_attempts=1)
    async def bad() -> None:
        job = asyncjobs.current_job()
        job.checkpoint({"fine": True})
        try:
            job.checkpoint(value)
        except asyncjobs.SerializationError:
            assert job.last_checkpoint == {"fine": True}  # the bad one changed nothing
            raise

    job_id = await client.enqueue(bad)
    async with app.worker():
        with pytest.raises(asyncjobs.JobFailed, match=message):
            await client.wait(job_id, timeout=10)
    assert (await client.get(job_id)).checkpoint == {"fine": True}
