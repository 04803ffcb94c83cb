"""Tasks run by worker subprocesses in tests (`asyncjobs worker tests.worker_app:app`).

The DSN and schema come from $ASYNCJOBS_DSN and $ASYNCJOBS_SCHEMA, set per test."""

from __future__ import annotations

import os
import signal
import time

import anyio

import asyncjobs

app = asyncjobs.App()


@app.task(name="sleep", max_attempts=3, retry=asyncjobs.Backoff(base=0.05))
async def sleep(seconds: float) -> str:
    await anyio.sleep(seconds)
    return "slept"


@app.task(name="quick")
async def quick(x: int) -> int:
    return x


@app.task(name="kill_worker", max_attempts=3)
async def kill_worker() -> None:
    # A poison job: it takes its whole worker down, every time.
    os.kill(os.getpid(), signal.SIGKILL)


@app.task(name="sync_sleep")
def sync_sleep(token: asyncjobs.CancelToken, seconds: float) -> str:
    token.wait(seconds)
    token.raise_if_cancelled()
    return "slept"


@app.task(name="block_loop")
async def block_loop(seconds: float) -> str:
    # The mistake the worker's watchdog reports: a blocking call in an async job.
    time.sleep(seconds)
    return "blocked"
