"""asyncjobs inside a FastAPI app: the lifespan runs a client and a worker; requests enqueue,
the worker in the same process runs the jobs; leaving the lifespan requeues what still runs.
Driven through the real lifespan (asgi-lifespan) and real HTTP handling (httpx ASGI)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType

import anyio
import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI, Request
from pydantic import BaseModel

import asyncjobs
from tests.helpers import Output

ROOT = Path(__file__).resolve().parent.parent


class Numbers(BaseModel):
    a: int
    b: int


def make_api(app: asyncjobs.App) -> FastAPI:
    """A FastAPI app whose lifespan runs `app`'s client and a worker."""

    @app.task
    async def add(a: int, b: int) -> int:
        return a + b

    @app.task
    async def block() -> None:
        await anyio.sleep(60)

    @contextlib.asynccontextmanager
    async def lifespan(api: FastAPI) -> AsyncIterator[dict[str, asyncjobs.Client]]:
        async with app.client() as client, app.worker(concurrency=4):
            yield {"jobs": client}  # lifespan state: request.state.jobs

    api = FastAPI(lifespan=lifespan)

    @api.post("/add", status_code=202)
    async def enqueue_add(numbers: Numbers, request: Request) -> dict[str, int]:
        return {"job_id": await request.state.jobs.enqueue(add, numbers.a, numbers.b)}

    @api.post("/block", status_code=202)
    async def enqueue_block(request: Request) -> dict[str, int]:
        return {"job_id": await request.state.jobs.enqueue(block)}

    @api.get("/jobs/{job_id}/result")
    async def result(job_id: int, request: Request) -> object:
        return await request.state.jobs.wait(job_id, timeout=10)

    return api


@contextlib.asynccontextmanager
async def serve(api: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Run `api` through its lifespan and give an HTTP client talking to it."""
    async with LifespanManager(api, startup_timeout=30, shutdown_timeout=30) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            yield http


async def until_state(
    client: asyncjobs.Client, job_id: int, state: asyncjobs.JobState
) -> asyncjobs.Job:
    with anyio.fail_after(10):
        while (job := await client.get(job_id)).state is not state:
            await anyio.sleep(0.01)
    return job


async def test_a_request_enqueues_and_the_lifespan_worker_runs_it(
    app: asyncjobs.App, client: asyncjobs.Client
) -> None:
    async with serve(make_api(app)) as http:
        response = await http.post("/add", json={"a": 2, "b": 3})
        assert response.status_code == 202, response.text
        job_id = response.json()["job_id"]
        assert await client.wait(job_id, timeout=10) == 5
        assert (await http.get(f"/jobs/{job_id}/result")).json() == 5
    job = await client.get(job_id)
    assert job.state is asyncjobs.JobState.SUCCEEDED and job.attempt == 1


async def test_leaving_the_lifespan_requeues_a_running_job_at_once(
    app: asyncjobs.App, client: asyncjobs.Client
) -> None:
    async with serve(make_api(app)) as http:
        job_id = (await http.post("/block")).json()["job_id"]
        await until_state(client, job_id, asyncjobs.JobState.PROCESSING)
        leaving = time.monotonic()
    assert time.monotonic() - leaving < 5
    job = await client.get(job_id)
    assert job.state is asyncjobs.JobState.QUEUED and job.attempt == 0
    assert await client.workers() == []


@pytest.fixture
def example(pg_dsn: str, schema: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """examples/fastapi_app.py, its App pointed at the test's database and schema."""
    monkeypatch.syspath_prepend(str(ROOT))
    import examples.fastapi_app as module
    from examples import tasks

    monkeypatch.setattr(tasks.app, "dsn", pg_dsn)
    monkeypatch.setattr(tasks.app, "schema", schema)
    return module


async def test_the_example_app(example: ModuleType, client: asyncjobs.Client) -> None:
    async with serve(example.api) as http:
        response = await http.post("/signup", json={"email": "ada@example.com", "name": "Ada"})
        assert response.status_code == 202, response.text
        mail = response.json()["job_id"]
        assert (await http.get(f"/jobs/{mail}/result")).json() == (
            "welcome mail sent to Ada <ada@example.com>"
        )
        shown = (await http.get(f"/jobs/{mail}")).json()
        assert (
            shown["state"] == "succeeded" and shown["task"] == "examples.tasks.send_welcome_email"
        )

        small = (await http.post("/thumbnails", json={"path": "a.jpg", "sizes": [64]})).json()
        thumbs = (await http.get(f"/jobs/{small['job_id']}/result")).json()
        assert len(thumbs) == 1 and thumbs[0].startswith("a.jpg.64px.")

        # A sync job in its thread stops as soon as it is cancelled through the API.
        big = await http.post("/thumbnails", json={"path": "b.jpg", "sizes": [1] * 300})
        job_id = big.json()["job_id"]
        await until_state(client, job_id, asyncjobs.JobState.PROCESSING)
        assert (await http.post(f"/jobs/{job_id}/cancel")).json() == {"cancelled": True}
        with anyio.fail_after(5):
            result = await http.get(f"/jobs/{job_id}/result")
        assert result.status_code == 409 and "cancelled" in result.text
        assert (await http.get(f"/jobs/{job_id}")).json()["state"] == "cancelled"

        assert (await http.get("/jobs/999999")).status_code == 404
        assert (await http.post("/jobs/999999/cancel")).status_code == 404


async def test_uvicorn_with_the_example_log_config_shows_each_attempt(
    pg_dsn: str, schema: str
) -> None:
    """uvicorn's own logging config covers only its loggers: without one that names
    `asyncjobs` (examples/logging.json, see README "Logging") no asyncjobs line appears."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    uvicorn = [sys.executable, "-m", "uvicorn", "examples.fastapi_app:api"]
    server = subprocess.Popen(
        [*uvicorn, "--port", str(port), "--log-config", "examples/logging.json"],
        cwd=ROOT,
        env={**os.environ, "ASYNCJOBS_DSN": pg_dsn, "ASYNCJOBS_SCHEMA": schema},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert server.stdout is not None
    output = Output(server.stdout)
    lines: list[str] = []

    async def line_with(text: str) -> str:
        with anyio.fail_after(30):
            while not (line := await anyio.to_thread.run_sync(output.readline)) or text not in line:
                assert line, "".join(lines)
                lines.append(line)
        lines.append(line)
        return line

    try:
        await line_with("Application startup complete")
        assert any(" INFO asyncjobs.worker: worker " in line for line in lines), lines
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            signup = {"email": "ada@example.com", "name": "Ada"}
            job_id = (await http.post("/signup", json=signup)).json()["job_id"]
        line = await line_with(f"job {job_id} examples.tasks.send_welcome_email attempt 1/5:")
        assert "INFO asyncjobs.worker:" in line and ": succeeded in " in line, line
    finally:
        server.send_signal(signal.SIGINT)
        await anyio.to_thread.run_sync(server.wait, 30)
        output.read()
