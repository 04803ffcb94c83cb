"""The benchmark's asyncjobs tasks; the worker runs `python -m asyncjobs worker
benchmarks.systems.asyncjobs_tasks:app` with $ASYNCJOBS_DSN and $ASYNCJOBS_SCHEMA set."""

from __future__ import annotations

import asyncio

import asyncjobs
from benchmarks.marks import emit
from benchmarks.marks import tick as count_tick

app = asyncjobs.App()


@app.task(name="bench.noop")
async def noop(i: int) -> None:
    """Does nothing: drain and enqueue throughput."""


@app.task(name="bench.tick")
async def tick(i: int) -> None:
    """Counts itself: the held-transaction scenario keeps a steady backlog with it."""
    count_tick()


@app.task(name="bench.mark")
async def mark(key: str) -> None:
    """Records when it started: pickup latency."""
    emit("start", key)


@app.task(name="bench.sleeper")
async def sleeper(key: str, seconds: float) -> None:
    """Records its start, then sleeps; records the moment it is interrupted."""
    emit("start", key)
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        emit("cancelled", key)
        raise
