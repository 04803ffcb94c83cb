"""asyncjobs inside a FastAPI app: its lifespan runs a client and a worker.

    pip install -e ".[fastapi]" uvicorn
    uvicorn examples.fastapi_app:api --log-config examples/logging.json

(`--log-config` makes asyncjobs' INFO lines, one per job attempt, appear beside uvicorn's;
uvicorn's own config covers only its loggers.)

    curl -X POST localhost:8000/signup -H 'content-type: application/json' \\
         -d '{"email": "ada@example.com", "name": "Ada"}'              # {"job_id": 1}
    curl localhost:8000/jobs/1/result                                 # waits for it
    curl -X POST localhost:8000/thumbnails -H 'content-type: application/json' \\
         -d '{"path": "cat.jpg", "sizes": [64, 128, 256, 512, 1024, 2048]}'
    curl -X POST localhost:8000/jobs/2/cancel                         # stops at once
    curl localhost:8000/jobs/2

Leaving the lifespan (Ctrl-C, a deploy) stops the worker: running jobs get `grace`
seconds, then go back to the queue without spending an attempt, for the next worker.
Workers elsewhere (`asyncjobs worker examples.tasks:app`) can share the queue.
Without $ASYNCJOBS_DSN an embedded PostgreSQL starts; set it to use your own server.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from pydantic import BaseModel

import asyncjobs
from examples.tasks import app, make_thumbnails, send_welcome_email


@contextlib.asynccontextmanager
async def lifespan(api: FastAPI) -> AsyncIterator[None]:
    async with app.client() as client, app.worker(concurrency=10, grace=5):
        api.state.jobs = client
        yield


api = FastAPI(title="asyncjobs example", lifespan=lifespan)


def _jobs(request: Request) -> asyncjobs.Client:
    client: asyncjobs.Client = request.app.state.jobs
    return client


Jobs = Annotated[asyncjobs.Client, Depends(_jobs)]


class Signup(BaseModel):
    email: str
    name: str


class Thumbnails(BaseModel):
    path: str
    sizes: list[int]


class Enqueued(BaseModel):
    job_id: int


class JobView(BaseModel):
    id: int
    task: str
    state: str
    attempt: int
    max_attempts: int
    result: Any = None
    error: dict[str, Any] | None = None


@api.post("/signup", status_code=202)
async def signup(body: Signup, jobs: Jobs) -> Enqueued:
    """Answer at once; the welcome mail goes out from a job."""
    return Enqueued(job_id=await jobs.enqueue(send_welcome_email, body.email, name=body.name))


@api.post("/thumbnails", status_code=202)
async def thumbnails(body: Thumbnails, jobs: Jobs) -> Enqueued:
    return Enqueued(job_id=await jobs.enqueue(make_thumbnails, body.path, body.sizes))


@api.get("/jobs/{job_id}")
async def show_job(job_id: int, jobs: Jobs) -> JobView:
    try:
        job = await jobs.get(job_id)
    except asyncjobs.JobNotFound as exc:
        raise HTTPException(404, str(exc)) from exc
    return JobView(
        id=job.id,
        task=job.task,
        state=job.state.value,
        attempt=job.attempt,
        max_attempts=job.max_attempts,
        result=job.result,
        error=job.error,
    )


@api.get("/jobs/{job_id}/result")
async def job_result(job_id: int, jobs: Jobs, timeout: float = 10.0) -> Any:
    """Wait (woken by NOTIFY, not polling) for the job to finish; its result."""
    try:
        return await jobs.wait(job_id, timeout=timeout)
    except asyncjobs.JobNotFound as exc:
        raise HTTPException(404, str(exc)) from exc
    except (asyncjobs.JobFailed, asyncjobs.JobCancelled) as exc:
        raise HTTPException(409, str(exc)) from exc
    except asyncjobs.WaitTimeout as exc:
        raise HTTPException(504, str(exc)) from exc


@api.post("/jobs/{job_id}/cancel")
async def cancel_job(job_id: int, jobs: Jobs) -> dict[str, bool]:
    """Cancel a job; if it is running, it stops at once, wherever it runs."""
    try:
        return {"cancelled": await jobs.cancel(job_id)}
    except asyncjobs.JobNotFound as exc:
        raise HTTPException(404, str(exc)) from exc
