"""`asyncjobs demo`: jobs flowing, a running job cancelled, a killed worker's job picked up by
another worker, each with its measured time, on the embedded PostgreSQL (or $ASYNCJOBS_DSN)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
import click

from ..app import App
from ..client.client import Client
from ..db.connections import connect
from ..errors import JobCancelled
from ..job import JobState
from ..job_context import current_job

SCHEMA = "asyncjobs_demo"
app = App(name="asyncjobs-demo", schema=SCHEMA)
# Held by the running demo, on a session of its own: a second demo says so and leaves its
# schema alone (it would drop it under the first one's workers).
_DEMO_LOCK = 0x6173796E636A6F62  # "asyncjob"


@app.task(name="demo.add")
async def add(a: int, b: int) -> int:
    """A quick job."""
    return a + b


@app.task(name="demo.long", max_attempts=3)
async def long(seconds: float) -> str:
    """A long job that notes when it started and when it was interrupted, so the demo can
    time the cancel and the restart after a crash."""
    _mark(f"started-{current_job().attempt}")
    try:
        await anyio.sleep(seconds)
    except anyio.get_cancelled_exc_class():
        _mark("interrupted")
        raise
    return f"slept {seconds}s"


def _mark(name: str) -> None:
    """Note the time in the demo's directory; renamed into place, so never read half-written."""
    marks = os.environ.get("ASYNCJOBS_DEMO_DIR")
    if marks:
        partial = Path(marks, f".{name}")
        partial.write_text(repr(time.time()))
        partial.rename(Path(marks, name))


def _say(step: str, text: str) -> None:
    click.echo(f"{click.style(step, fg='cyan', bold=True)} {text}")


def _ms(seconds: float) -> str:
    return click.style(f"{seconds * 1000:.1f} ms", fg="green", bold=True)


async def _until(client: Client, job_id: int, check: object, timeout: float = 30) -> float:
    with anyio.fail_after(timeout):
        while not check(await client.get(job_id)):  # type: ignore[operator]
            await anyio.sleep(0.001)
    return time.time()


async def run_demo() -> None:
    """Run the whole demo; about ten seconds."""
    async with app.database() as dsn:
        lock = await connect(dsn)
        try:
            if not await lock.fetchval("SELECT pg_try_advisory_lock($1)", _DEMO_LOCK):
                raise click.ClickException(
                    "another `asyncjobs demo` is running on this database; wait for it to "
                    "end (about ten seconds), then run it again"
                )
            await _run_demo(dsn)
        finally:
            await lock.close()


async def _run_demo(dsn: str) -> None:
    # The demo's schema is its own and starts afresh, whatever version of asyncjobs left
    # it there (a client would refuse to open a schema newer than it knows).
    conn = await connect(dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')
    finally:
        await conn.close()
    with tempfile.TemporaryDirectory(prefix="asyncjobs-demo-") as marks:
        async with app.client() as client:
            where = (
                "embedded PostgreSQL" if not os.environ.get("ASYNCJOBS_DSN") else "$ASYNCJOBS_DSN"
            )
            _say("asyncjobs demo", f"on {where}, schema {SCHEMA}")
            # The workers find the database as this process did (the embedded server, which
            # they keep up while they run, or $ASYNCJOBS_DSN).
            env = {**os.environ, "ASYNCJOBS_DEMO_DIR": marks}
            workers = [
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "asyncjobs",
                        "--log-level",
                        "WARNING",
                        "worker",
                        "asyncjobs.cli.demo:app",
                        "--concurrency",
                        "8",
                    ],
                    env=env,
                )
                for _ in range(2)
            ]
            try:
                with anyio.fail_after(30):
                    while len(await client.workers()) < 2:
                        await anyio.sleep(0.02)
                _say("1.", f"two worker processes: pids {', '.join(str(w.pid) for w in workers)}")

                started = time.perf_counter()
                ids = await client.enqueue_many(add.call(i, i) for i in range(1000))
                results = [await client.wait(job_id, timeout=60) for job_id in ids]
                took = time.perf_counter() - started
                assert results == [i + i for i in range(1000)]
                _say(
                    "2.",
                    f"1,000 jobs enqueued in one round trip and run: {_ms(took)} "
                    f"({1000 / took:,.0f} jobs/s)",
                )

                job_id = await client.enqueue(long, 60)
                await _until(client, job_id, lambda j: j.state is JobState.PROCESSING)
                asked = time.time()
                await client.cancel(job_id)
                with anyio.fail_after(10):
                    while not Path(marks, "interrupted").exists():
                        await anyio.sleep(0.001)
                stopped = float(Path(marks, "interrupted").read_text())
                with contextlib.suppress(JobCancelled):
                    await client.wait(job_id, timeout=5)
                _say(
                    "3.",
                    f"a running 60 s job cancelled: its code was interrupted "
                    f"{_ms(stopped - asked)} after cancel() returned (pushed by NOTIFY)",
                )

                job_id = await client.enqueue(long, 2)
                job = await client.get(job_id)
                await _until(client, job_id, lambda j: j.state is JobState.PROCESSING)
                job = await client.get(job_id)
                assert job.worker_id is not None
                holder = {w.id: w.pid for w in await client.workers()}[job.worker_id]
                victim = next(w for w in workers if w.pid == holder)
                os.kill(holder, signal.SIGKILL)
                killed = time.time()
                with anyio.fail_after(30):
                    while not Path(marks, "started-2").exists():
                        await anyio.sleep(0.001)
                again = float(Path(marks, "started-2").read_text())
                victim.wait()
                result = await client.wait(job_id, timeout=30)
                _say(
                    "4.",
                    f"worker {holder} SIGKILLed mid-job: the job's code ran again on the other "
                    f"worker {_ms(again - killed)} later (no timeout, no sweeper: a peer waits "
                    f"on each worker's key, see the README); it {result}",
                )
            finally:
                for worker in workers:
                    if worker.poll() is None:
                        worker.send_signal(signal.SIGTERM)
                for worker in workers:
                    worker.wait(30)
            _say("5.", "workers stopped with SIGTERM. Next: README.md, `asyncjobs --help`.")
