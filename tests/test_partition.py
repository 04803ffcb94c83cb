"""Fencing under a network partition: a worker cut off from PostgreSQL stops its jobs
strictly before the server lets its sessions go, which is what lets another worker run
them (see GIVE_UP_AFTER in db/connections.py). The partition is a TCP proxy the test
starts on loopback and stalls."""

from __future__ import annotations

import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import asyncpg
import pytest

import asyncjobs
from asyncjobs.db.connections import SERVER_GIVES_UP_AFTER
from tests.helpers import read_marks, until
from tests.tcp_proxy import PartitionProxy

Spawn = Callable[..., subprocess.Popen[str]]


@pytest.fixture
async def proxy(pg_dsn: str) -> AsyncIterator[PartitionProxy]:
    async with PartitionProxy(pg_dsn) as running:
        yield running


@pytest.mark.parametrize("hand_off_after", ["0.2", "5"], ids=["handed-off", "claimed"])
async def test_a_cut_off_worker_stops_its_job_before_anyone_else_may_run_it(
    *,
    client: asyncjobs.Client,
    spawn_worker: Spawn,
    proxy: PartitionProxy,
    admin: asyncpg.Connection,
    tmp_path: Path,
    hand_off_after: str,
) -> None:
    marks = tmp_path / "marks"
    cut_off = spawn_worker(
        "--concurrency",
        "1",
        "--hand-off-after",
        hand_off_after,
        env={"ASYNCJOBS_DSN": proxy.dsn},
    )
    with anyio.fail_after(30):
        while len(await client.workers()) < 1:
            await anyio.sleep(0.02)
    job_id = await client.enqueue("async_marked", str(marks), 120.0)
    await until(client, job_id, lambda j: j.state == "processing")
    if hand_off_after == "0.2":
        with anyio.move_on_after(10) as scope:
            while (
                await admin.fetchval(
                    f'SELECT lease FROM "{client.app.schema}".jobs WHERE id = $1', job_id
                )
                is None
            ):
                await anyio.sleep(0.02)
        if scope.cancelled_caught:
            cut_off.kill()
            raise AssertionError(cut_off.stdout.read() if cut_off.stdout else "")
    other = spawn_worker("--concurrency", "1", "--poll-interval", "120")
    with anyio.fail_after(30):
        while len(await client.workers()) < 2:
            await anyio.sleep(0.02)
    await anyio.sleep(0.5)

    cut = time.time()
    proxy.partition()
    # The worker must give up on its own: the stalled path hides the cut from its kernel.
    with anyio.fail_after(SERVER_GIVES_UP_AFTER):
        while not any(m[0] == "stop" for m in read_marks(marks)):
            await anyio.sleep(0.05)
    stopped = next(m for m in read_marks(marks) if m[0] == "stop")
    # The server gives up when its keepalives do; here the test plays it, at that time.
    await anyio.sleep(max(0.0, cut + SERVER_GIVES_UP_AFTER - time.time()))
    proxy.close_server_side()
    job = await until(client, job_id, lambda j: j.state == "processing" and j.attempt == 2)
    again = await _until_marked(marks, 2)
    assert stopped[1] == 1 and stopped[2] == cut_off.pid
    assert stopped[3] - cut < SERVER_GIVES_UP_AFTER, f"stopped {stopped[3] - cut:.1f}s after"
    assert again[2] == other.pid and again[3] > stopped[3], "ran twice at once"
    assert job.attempt == 2
    await client.cancel(job_id)
    for proc in (cut_off, other):
        proc.kill()
        proc.wait(10)


async def _until_marked(path: Path, attempt: int) -> tuple[str, int, int, float]:
    with anyio.fail_after(30):
        while True:
            for mark in read_marks(path):
                if mark[0] == "start" and mark[1] == attempt:
                    return mark
            await anyio.sleep(0.02)
