"""tests/worker_app.py's app with an `on_job_end` hook that appends each event, as a JSON
line, to $HOOKS_FILE at once (a SIGKILLed worker keeps what it wrote), for tests that run
it as a subprocess (`asyncjobs worker tests.hooks_worker_app:app`)."""

from __future__ import annotations

import json
import os

import asyncjobs
from tests.worker_app import app

__all__ = ["app"]


@app.hooks.on_job_end
def record(run: asyncjobs.JobRun) -> None:
    event = {
        "job_id": run.job_id,
        "task": run.task,
        "queue": run.queue,
        "attempt": run.attempt,
        "max_attempts": run.max_attempts,
        "outcome": run.outcome,
        "worker_id": str(run.worker_id),
        "reported_by": str(run.reported_by) if run.reported_by is not None else None,
        "duration": run.duration,
        "retry_in": run.retry_in,
        "error_type": (run.error or {}).get("type"),
        "pid": os.getpid(),
    }
    with open(os.environ["HOOKS_FILE"], "a") as out:
        out.write(json.dumps(event) + "\n")
