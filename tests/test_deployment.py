"""The deployment example (docker-compose.yml and its Dockerfile): the worker itself gets
docker's SIGTERM and stops within the stop timeout. No Docker here: the test reads the
files, and runs the compose service's command as the container runs it (exec form, the
signal sent to the worker's own process), against the test's PostgreSQL."""

from __future__ import annotations

import json
import re
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import anyio

import asyncjobs
from tests.helpers import until, workers_up

ROOT = Path(__file__).resolve().parent.parent
Spawn = Callable[..., subprocess.Popen[str]]


def _worker_service() -> dict[str, str]:
    """The `worker` service's keys (those of one line) in docker-compose.yml."""
    text = (ROOT / "docker-compose.yml").read_text()
    block = re.search(r"^  worker:\n((?:    .*\n|\s*\n)+)", text, re.MULTILINE)
    assert block is not None, "no worker service"
    found = re.findall(r"^    (\w+):\s*(.*?)\s*$", block.group(1), re.MULTILINE)
    return dict(found)


def _seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)(s|m)", duration)
    assert match is not None, duration
    return int(match.group(1)) * (60 if match.group(2) == "m" else 1)


def test_the_compose_worker_runs_itself_with_a_grace_inside_the_stop_timeout() -> None:
    service = _worker_service()
    command = json.loads(service["command"])
    # Exec form: no shell between docker and the worker (`sh -c "... && asyncjobs worker"`
    # keeps docker's SIGTERM to itself, and the worker is SIGKILLed when the timeout ends).
    assert command[:2] == ["asyncjobs", "worker"], command
    grace = float(command[command.index("--grace") + 1])
    # What still runs after the grace is requeued, then the worker closes: time left over.
    assert grace + 5 <= _seconds(service["stop_grace_period"]), service
    assert service["init"] == "true"  # PID 1 passes the signal on
    assert service["restart"] in ("on-failure", "unless-stopped", "always"), service
    # Installed when the image is built, not at each start; the image runs the same command.
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^RUN pip install", dockerfile, re.MULTILINE), dockerfile
    (cmd,) = re.findall(r"^CMD (.*)$", dockerfile, re.MULTILINE)
    assert json.loads(cmd) == command
    assert "build" in service and "pip install" not in service["command"]


async def test_the_compose_worker_stops_gracefully_on_sigterm(
    client: asyncjobs.Client, spawn_worker: Spawn
) -> None:
    """SIGTERM, as `docker compose stop` sends it: the running job finishes within the
    grace, and the worker exits 0 well inside the stop timeout."""
    command = json.loads(_worker_service()["command"])
    grace = float(command[command.index("--grace") + 1])
    worker = spawn_worker(*command[3:], app=command[2])
    await workers_up(client, 1)
    job_id = await client.enqueue("examples.tasks.make_thumbnails", "cat.jpg", [64] * 10)
    await until(client, job_id, lambda j: j.state == "processing")
    worker.send_signal(signal.SIGTERM)
    with anyio.fail_after(grace):
        while worker.poll() is None:
            await anyio.sleep(0.05)
    output = worker.stdout.read() if worker.stdout else ""
    assert worker.returncode == 0, output
    job = await client.get(job_id)
    assert (job.state, job.attempt) == ("succeeded", 1), output
