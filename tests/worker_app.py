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


@app.task(name="echo")
async def echo(text: str) -> str:
    return text


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


@app.task(name="record_run", max_attempts=3)
async def record_run(path: str, seconds: float) -> None:
    """Sleep, then append the attempt to `path`: the file lists the attempts that ran."""
    await anyio.sleep(seconds)
    async with await anyio.open_file(path, "a") as file:
        await file.write(f"{asyncjobs.current_job().attempt}\n")


@app.task(name="big_result", max_attempts=3)
async def big_result(chars: int) -> str:
    return "x" * chars


@app.task(name="big_error", max_attempts=1)
async def big_error(chars: int) -> None:
    raise ValueError("x" * chars)


def _mark(path: str, what: str) -> None:
    """Append '<what> <attempt> <pid> <time>' to `path`: a test reads whether two runs of
    a job ever overlapped."""
    with open(path, "a") as file:
        attempt = asyncjobs.current_job().attempt
        file.write(f"{what} {attempt} {os.getpid()} {time.time()}\n")


@app.task(name="marked", max_attempts=5)
def marked(path: str, seconds: float) -> str:
    """A sync job that ignores its token, marking its start and end."""
    _mark(path, "start")
    time.sleep(seconds)
    _mark(path, "end")
    return "marked"


@app.task(name="async_marked", max_attempts=5)
async def async_marked(path: str, seconds: float) -> str:
    """An async job marking its start, its end, and the moment it is stopped."""
    _mark(path, "start")
    try:
        await anyio.sleep(seconds)
    except anyio.get_cancelled_exc_class():
        _mark(path, "stop")
        raise
    _mark(path, "end")
    return "marked"


@app.task(name="count_up", max_attempts=5)
async def count_up(total: int, step: float) -> dict[str, object]:
    """Count to `total`, one every `step` seconds, resuming from the checkpoint. The
    checkpoint also lists where each attempt started; a stopped attempt marks it."""
    job = asyncjobs.current_job()
    state = job.last_checkpoint or {"done": 0, "starts": []}
    state["starts"].append(state["done"])
    state.pop("stopped", None)
    job.checkpoint(state)
    try:
        while state["done"] < total:
            await anyio.sleep(step)
            state["done"] += 1
            job.checkpoint(state)
    except anyio.get_cancelled_exc_class():
        # Saved on the way out: the shutdown hands the job back only after it is written.
        state["stopped"] = job.attempt
        job.checkpoint(state)
        raise
    return state


@app.task(name="progressing", max_attempts=1)
async def progressing(steps: int, step: float) -> str:
    """Report progress and a log line every `step` seconds (the dashboard shows them live)."""
    job = asyncjobs.current_job()
    for i in range(steps):
        job.progress(i / steps, f"step {i} of {steps}")
        job.log(f"step {i} done")
        await anyio.sleep(step)
    return "done"
