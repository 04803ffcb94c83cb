"""Attempts lost with their worker (SIGKILLed, real processes) are reported to the hooks
once, with the outcome 'lost', by the worker that finds them: the one that takes a claimed
job over, the one that rescues a dead worker's handed-off jobs, the one that fails a job
whose last attempt was lost. The Prometheus counts include them."""

from __future__ import annotations

import json
import signal
import socket
import uuid
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import asyncjobs
from tests.helpers import Spawn, read_marks, until, workers_up


def _events(path: Path, job_id: int) -> list[dict[str, Any]]:
    lines = path.read_text().splitlines() if path.exists() else []
    return [event for event in map(json.loads, lines) if event["job_id"] == job_id]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _spawn(spawn_worker: Spawn, hooks_file: Path, *args: str) -> Any:
    env = {"HOOKS_FILE": str(hooks_file)}
    return spawn_worker("--concurrency", "2", *args, env=env, app="tests.hooks_worker_app:app")


async def _scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"http://127.0.0.1:{port}/metrics")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


async def test_a_claimed_attempt_lost_with_its_worker_is_reported_once_by_its_taker(
    client: asyncjobs.Client, spawn_worker: Spawn, tmp_path: Path
) -> None:
    hooks_file = tmp_path / "hooks.jsonl"
    ports = [_free_port(), _free_port()]
    # Not handed off (3 s job, 8 s): the attempt is owned by its claim when its worker dies.
    options = ("--hand-off-after", "8", "--metrics-host", "127.0.0.1")
    procs = [
        _spawn(spawn_worker, hooks_file, *options, "--metrics-port", str(port)) for port in ports
    ]
    await workers_up(client, 2)
    job_id = await client.enqueue("sleep", 3.0)
    job = await until(client, job_id, lambda j: j.state == "processing")
    pids = {w.id: w.pid for w in await client.workers()}
    holder = pids[job.worker_id]
    (dead,) = [proc for proc in procs if proc.pid == holder]
    (alive,) = [proc for proc in procs if proc.pid != holder]
    port = ports[procs.index(alive)]
    survivor = next(wid for wid, pid in pids.items() if pid == alive.pid)
    dead.send_signal(signal.SIGKILL)
    assert await client.wait(job_id, timeout=30) == "slept"

    events = _events(hooks_file, job_id)
    assert [(e["attempt"], e["outcome"]) for e in events] == [(1, "lost"), (2, "succeeded")]
    lost = events[0]
    assert lost["worker_id"] == str(job.worker_id)
    assert lost["reported_by"] == str(survivor) and lost["pid"] == alive.pid
    assert lost["task"] == "sleep" and lost["queue"] == "default"
    assert lost["max_attempts"] == 3 and lost["error_type"] == "WorkerLost"
    assert lost["retry_in"] == 0.0
    # An upper bound: from the attempt's start until it was found lost.
    assert 0 < lost["duration"] < 30
    assert events[1]["reported_by"] is None

    samples = await _scrape(port)
    by_outcome = {"task": "sleep", "queue": "default", "outcome": "lost"}
    assert samples[("asyncjobs_jobs_finished_total", frozenset(by_outcome.items()))] == 1
    assert samples[("asyncjobs_job_run_seconds_count", frozenset(by_outcome.items()))] == 1
    running = frozenset({"task": "sleep", "queue": "default"}.items())
    assert samples[("asyncjobs_jobs_running", running)] == 0
    alive.terminate()
    assert alive.wait(10) == 0


async def test_a_handed_off_attempt_lost_with_its_worker_is_reported_once_by_its_rescuer(
    client: asyncjobs.Client, spawn_worker: Spawn, admin: asyncpg.Connection, tmp_path: Path
) -> None:
    hooks_file = tmp_path / "hooks.jsonl"
    first = _spawn(spawn_worker, hooks_file, "--hand-off-after", "0.2")
    await workers_up(client, 1)
    job_id = await client.enqueue("sleep", 60.0)
    job = await until(client, job_id, lambda j: j.state == "processing")
    with anyio.fail_after(20):
        while (
            await admin.fetchval(
                f'SELECT lease FROM "{client.app.schema}".jobs WHERE id = $1', job_id
            )
            is None
        ):
            await anyio.sleep(0.02)
    second = _spawn(spawn_worker, hooks_file, "--hand-off-after", "0.2")
    await workers_up(client, 2)
    rescuer = next(w.id for w in await client.workers() if w.pid == second.pid)
    first.send_signal(signal.SIGKILL)
    await until(client, job_id, lambda j: j.state == "processing" and j.attempt == 2)
    with anyio.fail_after(10):
        while not _events(hooks_file, job_id):
            await anyio.sleep(0.02)
    await client.cancel(job_id)
    with anyio.fail_after(10):
        while len(_events(hooks_file, job_id)) < 2:
            await anyio.sleep(0.02)
    second.terminate()
    assert second.wait(10) == 0

    events = _events(hooks_file, job_id)
    assert [(e["attempt"], e["outcome"]) for e in events] == [(1, "lost"), (2, "cancelled")]
    assert events[0]["worker_id"] == str(job.worker_id)
    assert events[0]["reported_by"] == str(rescuer) and events[0]["pid"] == second.pid
    assert events[0]["retry_in"] == 0.0 and 0 < events[0]["duration"] < 60


async def test_a_last_attempt_lost_with_its_worker_is_reported_once_as_the_job_fails(
    client: asyncjobs.Client, spawn_worker: Spawn, tmp_path: Path
) -> None:
    from tests.worker_app import kill_worker

    hooks_file = tmp_path / "hooks.jsonl"
    procs = [_spawn(spawn_worker, hooks_file), _spawn(spawn_worker, hooks_file)]
    await workers_up(client, 2)
    # Its only attempt takes its worker down; the other worker claims it next, and fails it.
    job_id = await client.enqueue(kill_worker.options(max_attempts=1))
    job = await until(client, job_id, lambda j: j.state == "failed")
    assert job.error is not None and "worker lost during attempt 1 of 1" in job.error["message"]
    with anyio.fail_after(10):
        while not _events(hooks_file, job_id):
            await anyio.sleep(0.02)
    (alive,) = [proc for proc in procs if proc.poll() is None]
    alive.terminate()
    assert alive.wait(10) == 0

    events = _events(hooks_file, job_id)
    assert [(e["attempt"], e["outcome"]) for e in events] == [(1, "lost")]
    assert events[0]["pid"] == alive.pid and events[0]["retry_in"] is None
    assert events[0]["task"] == "kill_worker" and events[0]["max_attempts"] == 1


async def test_an_attempt_whose_live_worker_lost_its_claim_is_reported_by_that_worker_only(
    client: asyncjobs.Client, spawn_worker: Spawn, admin: asyncpg.Connection, tmp_path: Path
) -> None:
    from tests.test_takeover import _terminate_claim

    hooks_file = tmp_path / "hooks.jsonl"
    claimed = ("--concurrency", "1", "--hand-off-after", "8")
    old = _spawn(spawn_worker, hooks_file, *claimed)
    await workers_up(client, 1)
    job_id = await client.enqueue("sleep", 3.0)
    await until(client, job_id, lambda j: j.state == "processing")
    new = _spawn(spawn_worker, hooks_file, *claimed)
    await workers_up(client, 2)
    await anyio.sleep(0.3)
    # The old worker lives on: it stops the job and reports the attempt itself; the new
    # one, which takes the job over, must not report it again.
    await _terminate_claim(admin, client.app.schema)
    assert await client.wait(job_id, timeout=30) == "slept"
    for proc in (old, new):
        proc.terminate()
        assert proc.wait(10) == 0

    events = _events(hooks_file, job_id)
    assert [(e["attempt"], e["outcome"]) for e in events] == [(1, "lost"), (2, "succeeded")]
    assert events[0]["pid"] == old.pid and events[0]["reported_by"] is None


async def _frozen_between_sessions(
    client: asyncjobs.Client,
    spawn_worker: Spawn,
    admin: asyncpg.Connection,
    hooks_file: Path,
    *,
    max_attempts: int,
) -> tuple[Any, uuid.UUID, int]:
    """A worker runs a claimed job and dies in the moment between its sessions' ends: its
    process is frozen (SIGSTOP: it notices nothing and answers nobody) and its claim session
    terminated, so the job's row is back while its lease session still holds its key.
    Returns (that process, its worker id, the job's id)."""
    from tests.test_takeover import _terminate_claim
    from tests.worker_app import sleep

    dying = _spawn(spawn_worker, hooks_file, "--hand-off-after", "8")
    await workers_up(client, 1)
    job_id = await client.enqueue(sleep.options(max_attempts=max_attempts), 2.0)
    job = await until(client, job_id, lambda j: j.state == "processing")
    dying.send_signal(signal.SIGSTOP)
    await _terminate_claim(admin, client.app.schema)
    assert job.worker_id is not None
    return dying, job.worker_id, job_id


@pytest.mark.parametrize("peers", [1, 2])
async def test_a_job_taken_between_its_dead_worker_s_sessions_ending_is_reported_once(
    client: asyncjobs.Client,
    spawn_worker: Spawn,
    admin: asyncpg.Connection,
    tmp_path: Path,
    peers: int,
) -> None:
    """The peer that takes the job over takes the dead worker for alive (its key is held):
    it reports the attempt once its handshake finds that worker gone."""
    hooks_file = tmp_path / "hooks.jsonl"
    dying, dead_id, job_id = await _frozen_between_sessions(
        client, spawn_worker, admin, hooks_file, max_attempts=3
    )
    procs = [_spawn(spawn_worker, hooks_file) for _ in range(peers)]
    job = await until(client, job_id, lambda j: j.state == "processing" and j.attempt == 2)
    # Taken over from a worker it took for alive: the new attempt waits for it.
    stopping_on = await admin.fetchval(
        f'SELECT stopping_on FROM "{client.app.schema}".jobs WHERE id = $1', job_id
    )
    assert stopping_on == dead_id
    await anyio.sleep(0.3)
    assert _events(hooks_file, job_id) == []
    dying.send_signal(signal.SIGKILL)
    assert await client.wait(job_id, timeout=30) == "slept"
    taker = next(w for w in await client.workers() if w.id == job.worker_id)
    await anyio.sleep(0.3)  # a second report, if any, would be written by now
    for proc in procs:
        proc.terminate()
        assert proc.wait(10) == 0

    events = _events(hooks_file, job_id)
    assert [(e["attempt"], e["outcome"]) for e in events] == [(1, "lost"), (2, "succeeded")]
    lost = events[0]
    assert lost["worker_id"] == str(dead_id) and lost["reported_by"] == str(taker.id)
    assert lost["pid"] == taker.pid and lost["retry_in"] == 0.0
    assert lost["error_type"] == "WorkerLost" and 0 < lost["duration"] < 30


async def test_a_takeover_stopped_before_its_dead_worker_is_found_gone_still_reports_once(
    client: asyncjobs.Client, spawn_worker: Spawn, admin: asyncpg.Connection, tmp_path: Path
) -> None:
    """The new attempt is cancelled while it waits for the dying worker: the question of
    who reports the old one outlives it."""
    hooks_file = tmp_path / "hooks.jsonl"
    dying, dead_id, job_id = await _frozen_between_sessions(
        client, spawn_worker, admin, hooks_file, max_attempts=3
    )
    peer = _spawn(spawn_worker, hooks_file)
    await until(client, job_id, lambda j: j.state == "processing" and j.attempt == 2)
    assert await client.cancel(job_id)
    with anyio.fail_after(10):
        while not _events(hooks_file, job_id):
            await anyio.sleep(0.02)
    dying.send_signal(signal.SIGKILL)
    with anyio.fail_after(10):
        while len(_events(hooks_file, job_id)) < 2:
            await anyio.sleep(0.02)
    await anyio.sleep(0.3)  # a second report, if any, would be written by now
    peer.terminate()
    assert peer.wait(10) == 0

    events = _events(hooks_file, job_id)
    assert [(e["attempt"], e["outcome"]) for e in events] == [(2, "cancelled"), (1, "lost")]
    assert events[1]["worker_id"] == str(dead_id) and events[1]["pid"] == peer.pid
    assert (await client.get(job_id)).state == "cancelled"


@pytest.mark.parametrize("peers", [1, 2])
async def test_a_last_attempt_failed_between_its_dead_worker_s_sessions_ending_is_reported_once(
    client: asyncjobs.Client,
    spawn_worker: Spawn,
    admin: asyncpg.Connection,
    tmp_path: Path,
    peers: int,
) -> None:
    """The peer that fails the job (its last attempt was lost) takes the dead worker for
    alive: it reports the attempt once that worker is found gone."""
    hooks_file = tmp_path / "hooks.jsonl"
    dying, dead_id, job_id = await _frozen_between_sessions(
        client, spawn_worker, admin, hooks_file, max_attempts=1
    )
    procs = [_spawn(spawn_worker, hooks_file) for _ in range(peers)]
    job = await until(client, job_id, lambda j: j.state == "failed")
    assert job.error is not None and "worker lost during attempt 1 of 1" in job.error["message"]
    await anyio.sleep(0.3)
    assert _events(hooks_file, job_id) == []
    dying.send_signal(signal.SIGKILL)
    with anyio.fail_after(10):
        while not _events(hooks_file, job_id):
            await anyio.sleep(0.02)
    await anyio.sleep(0.3)  # a second report, if any, would be written by now
    pids = {proc.pid for proc in procs}
    for proc in procs:
        proc.terminate()
        assert proc.wait(10) == 0

    events = _events(hooks_file, job_id)
    assert [(e["attempt"], e["outcome"]) for e in events] == [(1, "lost")]
    assert events[0]["worker_id"] == str(dead_id) and events[0]["pid"] in pids
    assert events[0]["retry_in"] is None and events[0]["error_type"] == "WorkerLost"


async def test_a_last_attempt_whose_live_worker_lost_its_claim_is_reported_by_that_worker_only(
    client: asyncjobs.Client, spawn_worker: Spawn, admin: asyncpg.Connection, tmp_path: Path
) -> None:
    from tests.test_takeover import _terminate_claim
    from tests.worker_app import sleep

    hooks_file = tmp_path / "hooks.jsonl"
    claimed = ("--concurrency", "1", "--hand-off-after", "8")
    old = _spawn(spawn_worker, hooks_file, *claimed)
    await workers_up(client, 1)
    job_id = await client.enqueue(sleep.options(max_attempts=1), 3.0)
    await until(client, job_id, lambda j: j.state == "processing")
    new = _spawn(spawn_worker, hooks_file, *claimed)
    await workers_up(client, 2)
    await anyio.sleep(0.3)
    # The old worker lives on: it stops the job and reports the attempt itself; the new
    # one, which fails the job (its last attempt), must not report it again.
    await _terminate_claim(admin, client.app.schema)
    await until(client, job_id, lambda j: j.state == "failed")
    with anyio.fail_after(10):
        while not _events(hooks_file, job_id):
            await anyio.sleep(0.02)
    await anyio.sleep(0.5)
    for proc in (old, new):
        proc.terminate()
        assert proc.wait(10) == 0

    events = _events(hooks_file, job_id)
    assert [(e["attempt"], e["outcome"]) for e in events] == [(1, "lost")]
    assert events[0]["pid"] == old.pid and events[0]["reported_by"] is None


async def test_the_middle_attempt_of_a_chained_takeover_is_reported_once_when_its_worker_dies(
    client: asyncjobs.Client, spawn_worker: Spawn, admin: asyncpg.Connection, tmp_path: Path
) -> None:
    """Two claims lost in a row: worker A (alive, its thread running on) lost the job to B,
    which died while waiting for A (frozen, its claim session ended, then SIGKILL), and C
    took the job over from A. C waits for A, but B's attempt is not A's: C reports it once
    B is found gone. A reports its own attempt; C's runs once A has let go."""
    from tests.test_takeover import _terminate_claim

    hooks_file = tmp_path / "hooks.jsonl"
    marks = tmp_path / "marks"
    claimed = ("--concurrency", "1", "--hand-off-after", "8")
    a = _spawn(spawn_worker, hooks_file, *claimed)
    await workers_up(client, 1)
    job_id = await client.enqueue("marked", str(marks), 5.0)
    await until(client, job_id, lambda j: j.state == "processing")
    b = _spawn(spawn_worker, hooks_file, *claimed)
    await workers_up(client, 2)
    await anyio.sleep(0.3)
    await _terminate_claim(admin, client.app.schema)
    job = await until(client, job_id, lambda j: j.attempt == 2)  # B waits for A
    assert job.worker_id is not None
    b_id = job.worker_id
    c = _spawn(spawn_worker, hooks_file, *claimed)
    await workers_up(client, 3)
    b.send_signal(signal.SIGSTOP)
    await _terminate_claim(admin, client.app.schema)
    job = await until(client, job_id, lambda j: j.attempt == 3)  # C waits for A
    c_id = job.worker_id
    await anyio.sleep(0.3)
    assert _events(hooks_file, job_id) == []  # B's key is held: dying or alive
    b.send_signal(signal.SIGKILL)
    with anyio.fail_after(10):
        while not _events(hooks_file, job_id):
            await anyio.sleep(0.02)
    assert await client.wait(job_id, timeout=30) == "marked"
    await anyio.sleep(0.3)  # a second report, if any, would be written by now
    for proc in (a, c):
        proc.terminate()
        assert proc.wait(10) == 0

    events = _events(hooks_file, job_id)
    assert [(e["attempt"], e["outcome"]) for e in events] == [
        (2, "lost"),
        (1, "lost"),
        (3, "succeeded"),
    ]
    middle, first, last = events
    assert middle["worker_id"] == str(b_id) and middle["reported_by"] == str(c_id)
    assert middle["pid"] == c.pid and middle["error_type"] == "WorkerLost"
    assert first["pid"] == a.pid and first["reported_by"] is None
    assert last["pid"] == c.pid
    runs = read_marks(marks)
    assert [(w, n) for w, n, _, _ in runs] == [("start", 1), ("end", 1), ("start", 3), ("end", 3)]


async def test_a_worker_that_stops_while_its_report_waits_for_an_answer_waits_a_moment(
    client: asyncjobs.Client, spawn_worker: Spawn, admin: asyncpg.Connection, tmp_path: Path
) -> None:
    """The peer that took the job over from a dying worker is stopped (SIGTERM) before that
    worker is found gone: its attempt goes back to the queue, and the question of who
    reports the old one is answered before the peer exits, if the answer comes soon."""
    hooks_file = tmp_path / "hooks.jsonl"
    dying, dead_id, job_id = await _frozen_between_sessions(
        client, spawn_worker, admin, hooks_file, max_attempts=3
    )
    peer = _spawn(spawn_worker, hooks_file)
    await until(client, job_id, lambda j: j.state == "processing" and j.attempt == 2)
    peer.terminate()
    # Longer than the peer's shutdown takes otherwise (tens of ms), shorter than its wait.
    await anyio.sleep(0.3)
    assert peer.poll() is None
    dying.send_signal(signal.SIGKILL)
    assert peer.wait(10) == 0

    events = _events(hooks_file, job_id)
    assert [(e["attempt"], e["outcome"]) for e in events] == [(2, "released"), (1, "lost")]
    assert events[1]["worker_id"] == str(dead_id) and events[1]["pid"] == peer.pid
    job = await client.get(job_id)
    assert job.state == "queued"
