"""A job taken over from a worker that is alive but lost its claim runs only once that
worker has stopped it (worker/takeover.py): a handshake, not a fixed wait."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import anyio
import asyncpg
import pytest

import asyncjobs
from tests.helpers import read_marks, until, workers_up

Spawn = Callable[..., subprocess.Popen[str]]
# Claims are kept (no hand-off) so that the job's row is held by its claim session.
CLAIMED = ("--concurrency", "1", "--hand-off-after", "8")


async def _terminate_claim(admin: asyncpg.Connection, schema: str) -> None:
    """End the session of the claim that holds the running job: the one that deleted a
    queue row (it has a transaction id) in this schema."""
    with anyio.fail_after(10):
        while True:
            pids = await admin.fetch(
                "SELECT pid FROM pg_stat_activity WHERE backend_xid IS NOT NULL"
                " AND state = 'idle in transaction' AND strpos(query, $1) > 0"
                " AND query LIKE '%claim_jobs%'",
                f'"{schema}"',
            )
            if len(pids) == 1:
                break
            await anyio.sleep(0.02)
    await admin.execute("SELECT pg_terminate_backend($1)", pids[0]["pid"])


async def _lose_the_claim(
    client: asyncjobs.Client,
    spawn_worker: Spawn,
    admin: asyncpg.Connection,
    marks: Path,
    seconds: float = 3.0,
) -> tuple[subprocess.Popen[str], subprocess.Popen[str], int]:
    """A worker runs a sync job of `seconds` that ignores its token, a second one idles, and the
    first one's claim session is terminated: the worker lives on and can't interrupt the
    thread, while its row is back in the queue at once. Returns (old, new, job id)."""
    old = spawn_worker(*CLAIMED)
    await workers_up(client, 1)
    job_id = await client.enqueue("marked", str(marks), seconds)
    await until(client, job_id, lambda j: j.state == "processing")
    new = spawn_worker(*CLAIMED)
    await workers_up(client, 2)
    await anyio.sleep(0.3)
    await _terminate_claim(admin, client.app.schema)
    return old, new, job_id


async def test_a_job_taken_from_a_live_worker_runs_only_once_that_worker_stopped_it(
    client: asyncjobs.Client, spawn_worker: Spawn, admin: asyncpg.Connection, tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    old, new, job_id = await _lose_the_claim(client, spawn_worker, admin, marks)
    assert await client.wait(job_id, timeout=30) == "marked"
    runs = read_marks(marks)
    assert [(w, a) for w, a, _, _ in runs] == [("start", 1), ("end", 1), ("start", 2), ("end", 2)]
    assert runs[0][2] == old.pid and runs[2][2] == new.pid
    assert runs[1][3] <= runs[2][3], "attempt 2 started before attempt 1 ended"
    for proc in (old, new):
        proc.terminate()
        assert proc.wait(10) == 0


@pytest.mark.parametrize("action", ["cancel", "requeue", "delete"])
async def test_a_message_during_the_handshake_stops_the_waiting_attempt(
    client: asyncjobs.Client,
    spawn_worker: Spawn,
    admin: asyncpg.Connection,
    tmp_path: Path,
    action: str,
) -> None:
    """A cancel, requeue or delete while the new worker waits for the old one reaches the
    waiting attempt: it never runs (a requeued job runs once more, from attempt 1)."""
    marks = tmp_path / "marks"
    old, new, job_id = await _lose_the_claim(client, spawn_worker, admin, marks)
    await until(client, job_id, lambda j: j.attempt == 2)  # taken over, waiting
    if action == "cancel":
        assert await client.cancel(job_id)
    elif action == "requeue":
        await client.requeue(job_id)
    else:
        await client.delete(job_id)
    await anyio.sleep(4)  # the old attempt's thread has ended by now
    expected = [("start", 1), ("end", 1)]
    if action == "requeue":
        assert await client.wait(job_id, timeout=30) == "marked"
        expected += [("start", 1), ("end", 1)]
    runs = read_marks(marks)
    assert [(w, a) for w, a, _, _ in runs] == expected
    if action == "requeue":
        assert runs[1][3] <= runs[2][3]
    if action == "cancel":
        assert (await client.get(job_id)).state == "cancelled"
    for proc in (old, new):
        proc.terminate()
        assert proc.wait(10) == 0


async def test_a_second_taker_waits_for_the_first_worker_not_for_the_taker_between(
    client: asyncjobs.Client, spawn_worker: Spawn, admin: asyncpg.Connection, tmp_path: Path
) -> None:
    """Two claims lost in a row: the old worker (alive, its thread running on) lost the job
    to a second, which lost it in turn, while waiting, to a third. The second worker's
    'released' (of its own attempt, which never ran) is not the old worker's: the third
    still waits for the old attempt to end."""
    marks = tmp_path / "marks"
    old, new, job_id = await _lose_the_claim(client, spawn_worker, admin, marks, seconds=6.0)
    await until(client, job_id, lambda j: j.attempt == 2)  # taken over, waiting for `old`
    third = spawn_worker(*CLAIMED)
    await workers_up(client, 3)
    # Frozen, the second worker notices its lost claim only once the third has taken the
    # job over and waits too; then its own attempt stops and it says so.
    new.send_signal(signal.SIGSTOP)
    try:
        await _terminate_claim(admin, client.app.schema)
        await until(client, job_id, lambda j: j.attempt == 3)
        await anyio.sleep(0.3)  # the third worker asks `old`, and waits
    finally:
        new.send_signal(signal.SIGCONT)
    assert await client.wait(job_id, timeout=30) == "marked"
    runs = read_marks(marks)
    assert [(w, a) for w, a, _, _ in runs] == [("start", 1), ("end", 1), ("start", 3), ("end", 3)]
    assert runs[0][2] == old.pid and runs[2][2] == third.pid
    assert runs[1][3] <= runs[2][3], "attempt 3 started before attempt 1 ended"
    for proc in (old, new, third):
        proc.terminate()
        assert proc.wait(10) == 0
