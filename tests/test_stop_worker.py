"""Stopping one worker (client.stop_worker, the dashboard's "stop"): only that worker
stops, by push, and its running job goes back to the queue for the others at once."""

from __future__ import annotations

import time

import anyio
import pytest

import asyncjobs
from tests.helpers import Spawn, until, workers_up


async def test_stop_worker_stops_that_worker_only(
    client: asyncjobs.Client, spawn_worker: Spawn
) -> None:
    from tests.worker_app import sleep

    # A slow heartbeat: the stop must come by NOTIFY, not by the heartbeat's flag.
    procs = [spawn_worker("--concurrency", "1", "--heartbeat-interval", "60") for _ in range(2)]
    await workers_up(client, 2)
    job_id = await client.enqueue(sleep, 60)
    job = await until(client, job_id, lambda j: j.state.value == "processing", 20)
    first = job.worker_id
    assert first is not None
    asked = time.monotonic()
    assert await client.stop_worker(str(first)) is True
    assert await client.stop_worker(first) is False  # asked already
    job = await until(
        client, job_id, lambda j: j.attempt == 1 and j.worker_id not in (None, first), 20
    )
    assert job.state.value == "processing"
    with anyio.fail_after(20):
        while sum(proc.poll() is None for proc in procs) != 1:
            await anyio.sleep(0.02)
    assert time.monotonic() - asked < 10
    (left,) = await client.workers()
    assert left.id != first and left.stop_requested_at is None


@pytest.mark.parametrize("bad", ["nope", "", 42])
async def test_stop_worker_refuses_what_is_not_a_worker_id(
    client: asyncjobs.Client, bad: object
) -> None:
    with pytest.raises(asyncjobs.ConfigurationError, match="a worker id is a UUID"):
        await client.stop_worker(bad)  # type: ignore[arg-type]
    import uuid

    assert await client.stop_worker(uuid.uuid4()) is False
