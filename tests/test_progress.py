"""Progress and log lines reported by running jobs (async and sync), read back through the
client and the CLI; stale attempts write nothing; the log stays bounded."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import anyio
import asyncpg
import pytest

import asyncjobs
from asyncjobs.db.sql import Queries

ROOT = Path(__file__).resolve().parent.parent


async def _until(client: asyncjobs.Client, job_id: int, done: object) -> asyncjobs.Job:
    """Poll (the test only) until `done(job)` holds; generous bound."""
    with anyio.fail_after(15):
        while True:
            job = await client.get(job_id)
            if done(job):  # type: ignore[operator]
                return job
            await anyio.sleep(0.02)


async def test_an_async_job_reports_progress_seen_while_it_runs(
    app: asyncjobs.App, client: asyncjobs.Client
) -> None:
    release = anyio.Event()

    @app.task
    async def resize(n: int) -> int:
        job = asyncjobs.current_job()
        for i in range(4):
            job.progress(i / n, f"resized {i} of {n}")
        job.log("waiting for the test")
        await release.wait()
        job.progress(1.0, "done")
        job.log("finished")
        return job.attempt

    job_id = await client.enqueue(resize, 10)
    async with app.worker():
        seen = await _until(client, job_id, lambda j: j.progress is not None)
        assert seen.state is asyncjobs.JobState.PROCESSING
        assert (seen.progress, seen.progress_message) == (0.3, "resized 3 of 10")
        assert [line["message"] for line in seen.log] == ["waiting for the test"]
        release.set()
        assert await client.wait(job_id, timeout=10) == 1
    job = await client.get(job_id)
    # The last report is written before the outcome, however soon the job ends.
    assert (job.progress, job.progress_message) == (1.0, "done")
    assert [(line["attempt"], line["message"]) for line in job.log] == [
        (1, "waiting for the test"),
        (1, "finished"),
    ]
    assert all("at" in line for line in job.log)


async def test_a_sync_job_reports_progress_from_its_thread(
    app: asyncjobs.App, client: asyncjobs.Client
) -> None:
    main = threading.get_ident()
    release = threading.Event()

    @app.task
    def crunch(token: asyncjobs.CancelToken, n: int) -> bool:
        job = asyncjobs.current_job()
        assert job.token is token
        job.progress(0.5, "half way")
        job.log("in a thread")
        release.wait(10)
        return threading.get_ident() != main

    job_id = await client.enqueue(crunch, 1)
    async with app.worker():
        seen = await _until(client, job_id, lambda j: j.progress is not None)
        assert (seen.progress, seen.progress_message) == (0.5, "half way")
        release.set()
        assert await client.wait(job_id, timeout=10) is True
    assert [line["message"] for line in (await client.get(job_id)).log] == ["in a thread"]


async def test_the_log_keeps_the_last_50_lines(
    app: asyncjobs.App, client: asyncjobs.Client
) -> None:
    @app.task
    async def chatty() -> None:
        job = asyncjobs.current_job()
        for i in range(60):
            job.log(f"line {i}")
            if i == 30:
                await anyio.sleep(0.8)  # so that some lines are written in an earlier batch
        job.log("x" * 5000)

    job_id = await client.enqueue(chatty)
    async with app.worker():
        await client.wait(job_id, timeout=10)
    log = (await client.get(job_id)).log
    assert len(log) == 50
    assert [line["message"] for line in log[:-1]] == [f"line {i}" for i in range(11, 60)]
    assert len(log[-1]["message"]) == 1000


async def test_a_stopped_attempt_writes_no_progress(
    app: asyncjobs.App, client: asyncjobs.Client
) -> None:
    stopped = threading.Event()

    @app.task(max_attempts=1)
    def stubborn(token: asyncjobs.CancelToken) -> None:
        job = asyncjobs.current_job()
        job.progress(0.1, "started")
        token.wait(30)
        # Ignores the cancellation and goes on reporting: none of it may be written.
        job.progress(0.9, "stale")
        job.log("stale")
        stopped.set()

    job_id = await client.enqueue(stubborn)
    async with app.worker():
        await _until(client, job_id, lambda j: j.progress == 0.1)
        assert await client.cancel(job_id)
        with anyio.fail_after(10):
            await anyio.to_thread.run_sync(stopped.wait)
        await anyio.sleep(1.2)  # two write intervals
    job = await client.get(job_id)
    assert job.state is asyncjobs.JobState.CANCELLED
    assert (job.progress, job.progress_message, job.log) == (0.1, "started", [])


async def test_progress_for_another_attempt_is_refused_by_the_database(
    app: asyncjobs.App, client: asyncjobs.Client, admin: asyncpg.Connection, schema: str
) -> None:
    release = anyio.Event()

    @app.task
    async def waits() -> None:
        await release.wait()

    job_id = await client.enqueue(waits)
    sql = Queries.for_schema(schema).report_progress
    async with app.worker():
        job = await _until(client, job_id, lambda j: j.state is asyncjobs.JobState.PROCESSING)
        entry = await admin.fetchval(
            f'SELECT queue_entry FROM "{schema}".jobs WHERE id = $1', job_id
        )
        stale = await admin.execute(
            sql, [job_id], [entry], [job.attempt - 1], [0.7], ["old"], ["[]"], 50, [None]
        )
        current = await admin.execute(
            sql, [job_id], [entry], [job.attempt], [0.2], ["now"], ["[]"], 50, [None]
        )
        # The statement returns the jobs written (a SELECT over the UPDATE, for its NOTIFY).
        assert (stale, current) == ("SELECT 0", "SELECT 1")
        release.set()
        await client.wait(job_id, timeout=10)
    after = await admin.execute(
        sql, [job_id], [entry], [job.attempt], [0.9], ["late"], ["[]"], 50, [None]
    )
    assert after == "SELECT 0"
    assert (await client.get(job_id)).progress == 0.2


async def test_current_job_outside_a_job_says_so() -> None:
    with pytest.raises(asyncjobs.NoCurrentJob, match="only available inside a job"):
        asyncjobs.current_job()


async def test_bad_progress_fails_loudly_in_the_job(
    app: asyncjobs.App, client: asyncjobs.Client
) -> None:
    @app.task(max_attempts=1)
    async def overshoot() -> None:
        asyncjobs.current_job().progress(1.5)

    job_id = await client.enqueue(overshoot)
    async with app.worker():
        with pytest.raises(asyncjobs.JobFailed, match="progress must be a number from 0 to 1"):
            await client.wait(job_id, timeout=10)


async def test_cli_jobs_show_prints_progress_and_log(
    app: asyncjobs.App, client: asyncjobs.Client, pg_dsn: str, schema: str
) -> None:
    @app.task
    async def report() -> None:
        job = asyncjobs.current_job()
        job.progress(0.4, "resized 4 of 10")
        job.log("hello from the job")

    job_id = await client.enqueue(report)
    async with app.worker():
        await client.wait(job_id, timeout=10)
    env = {**os.environ, "ASYNCJOBS_DSN": pg_dsn, "ASYNCJOBS_SCHEMA": schema}
    with anyio.fail_after(60):
        done = await anyio.run_process(
            [sys.executable, "-m", "asyncjobs", "jobs", "show", str(job_id)], cwd=ROOT, env=env
        )
    out = done.stdout.decode()
    assert "  progress  40% resized 4 of 10\n" in out
    assert "attempt 1: hello from the job" in out
    assert isinstance(done, subprocess.CompletedProcess)


async def test_progress_starts_over_with_each_attempt_and_the_log_keeps_both(
    app: asyncjobs.App, client: asyncjobs.Client
) -> None:
    second_started = anyio.Event()
    release = anyio.Event()

    @app.task(max_attempts=2, retry=asyncjobs.Backoff(base=0.01, cap=0.01, jitter=False))
    async def flaky() -> int:
        job = asyncjobs.current_job()
        job.log(f"attempt {job.attempt} here")
        if job.attempt == 1:
            job.progress(0.8, "almost")
            raise RuntimeError("first attempt fails")
        second_started.set()
        await release.wait()
        return job.attempt

    job_id = await client.enqueue(flaky)
    async with app.worker():
        with anyio.fail_after(10):
            await second_started.wait()
        seen = await client.get(job_id)
        assert seen.attempt == 2
        assert (seen.progress, seen.progress_message) == (None, None)
        release.set()
        assert await client.wait(job_id, timeout=10) == 2
    job = await client.get(job_id)
    assert [(line["attempt"], line["message"]) for line in job.log] == [
        (1, "attempt 1 here"),
        (2, "attempt 2 here"),
    ]


async def test_a_report_the_database_refuses_is_dropped_alone(
    app: asyncjobs.App, client: asyncjobs.Client, admin: asyncpg.Connection, schema: str
) -> None:
    # Reports of running jobs go many per statement. One the database refuses (a constraint
    # stands in for any refusal) is dropped; the others are written, and nobody waits.
    release = anyio.Event()

    @app.task
    async def report(message: str) -> str:
        asyncjobs.current_job().progress(0.5, message)
        await release.wait()
        return message

    await admin.execute(
        f'ALTER TABLE "{schema}".jobs ADD CONSTRAINT no_poison'
        " CHECK (progress_message IS DISTINCT FROM 'poison')"
    )
    messages = ["fine", "poison", "also fine"]
    ids = [await client.enqueue(report, m) for m in messages]
    with anyio.fail_after(20):
        async with app.worker(concurrency=3):
            for job_id, message in zip(ids, messages, strict=True):
                if message != "poison":
                    seen = await _until(client, job_id, lambda j: j.progress is not None)
                    assert seen.progress_message == message
            release.set()
            assert [await client.wait(i, timeout=10) for i in ids] == messages
    assert (await client.get(ids[1])).progress is None
