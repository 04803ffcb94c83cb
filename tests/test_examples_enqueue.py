"""The examples of enqueueing in your own transaction run as documented (each in its own
process, on the test's database and schema), and a real worker runs what they committed."""

from __future__ import annotations

import subprocess
import sys

import anyio
import asyncpg
import pytest

import asyncjobs
from tests.helpers import ROOT, Spawn, workers_up


async def _run_example(env: dict[str, str], module: str) -> str:
    with anyio.fail_after(60):
        done = await anyio.run_process(
            [sys.executable, "-m", module], cwd=ROOT, env=env, check=False
        )
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


@pytest.mark.parametrize(
    ("module", "said"),
    [
        ("examples.enqueue_asyncpg", ["is queued", "was never stored"]),
        ("examples.enqueue_sqlalchemy", ["is queued", "was never stored"]),
        ("examples.enqueue_psycopg", ["async psycopg, committed", "is queued"]),
        ("examples.enqueue_django", ["is queued"]),
    ],
)
async def test_a_python_example_commits_its_job(
    env: dict[str, str], client: asyncjobs.Client, module: str, said: list[str]
) -> None:
    output = await _run_example(env, module)
    for words in said:
        assert words in output, output
    jobs = await client.list_jobs()
    assert jobs and all(job.state is asyncjobs.JobState.QUEUED for job in jobs)


async def test_the_sql_example_enqueues_and_a_worker_runs_its_jobs(
    env: dict[str, str],
    client: asyncjobs.Client,
    admin: asyncpg.Connection,
    schema: str,
    spawn_worker: Spawn,
) -> None:
    worker = subprocess.Popen(
        [sys.executable, "-m", "asyncjobs", "worker", "examples.tasks:app"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await workers_up(client, 1)
        script = (ROOT / "examples" / "enqueue.sql").read_text()
        # The example names the default schema; the test has its own.
        await admin.execute(script.replace("asyncjobs.enqueue(", f'"{schema}".enqueue('))
        jobs = sorted(await client.list_jobs(), key=lambda j: j.id)
        assert [(j.task, j.queue) for j in jobs] == [
            ("examples.tasks.add", "default"),
            ("examples.tasks.send_welcome_email", "emails"),
            ("examples.tasks.send_welcome_email", "emails"),
        ]
        assert await client.wait(jobs[0].id, timeout=30) == 3
        assert "grace@example.com" in await client.wait(jobs[2].id, timeout=30)
        assert jobs[1].state is asyncjobs.JobState.SCHEDULED
    finally:
        worker.kill()
        worker.wait()
