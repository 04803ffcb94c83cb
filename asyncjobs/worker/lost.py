"""Attempts lost with their worker: a worker that died ran no `on_job_end` for its
attempts, so the worker that finds them lost reports them, once. Three statements find
them, each under the guard that makes it the only one to: a start that takes a job over
from a dead worker (`start_and_finish`), the failure of a job whose last attempt was lost
(`fail_lost_jobs`), and the rescue of a dead worker's handed-off jobs (`rescue_worker`).
When the first two find the attempt's worker still holding its key, it may be alive (it
lost its claim, and reports the attempt itself) or dying (its sessions end one by one):
the takeover's ask tells which, and the report waits for it (see takeover.py).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping
from typing import Any

import asyncpg

from ..hooks import JobRun

logger = logging.getLogger("asyncjobs.worker")

# A worker id nobody has: the lost attempt's worker when the row didn't name one.
UNKNOWN_WORKER = uuid.UUID(int=0)


def lost_run(
    row: asyncpg.Record | Mapping[str, Any], *, attempt: int, gave_up: bool, reported_by: uuid.UUID
) -> JobRun:
    """The lost attempt `attempt` of the job in `row` (a statement's row: id, task, queue,
    max_attempts, trace_context, lost_worker, lost_after), as `on_job_end` gets it."""
    after = row["lost_after"]
    worker = row["lost_worker"]
    if isinstance(worker, str):  # from JSON (rescue_worker)
        worker = uuid.UUID(worker)
    max_attempts = row["max_attempts"]
    message = (
        f"worker lost during attempt {attempt} of {max_attempts}; giving up"
        if gave_up
        else f"the worker running attempt {attempt} was lost"
    )
    context = row["trace_context"]
    run = JobRun(
        job_id=row["id"],
        task=row["task"],
        queue=row["queue"],
        attempt=attempt,
        max_attempts=max_attempts,
        worker_id=worker if worker is not None else UNKNOWN_WORKER,
        waited=None,
        trace_context=context if isinstance(context, dict) else None,
        outcome="lost",
        duration=max(0.0, after) if after is not None else None,
        error={"type": "WorkerLost", "message": message, "traceback": None, "attempt": attempt},
        # Whether one follows is its next start's business: none if it gave up.
        retry_in=None if gave_up else 0.0,
        reported_by=reported_by,
    )
    if run.duration is not None:
        run.started_at = time.time() - run.duration
    return run


def rescued_runs(lost: list[dict[str, Any]], reported_by: uuid.UUID) -> list[JobRun]:
    """The attempts a rescue found lost (rescue_worker_jobs' JSON array), as JobRuns."""
    return [
        lost_run(row, attempt=row["attempt"], gave_up=row["gave_up"], reported_by=reported_by)
        for row in lost
    ]


def log_lost(run: JobRun) -> None:
    """Log a lost attempt as `log_attempt` logs the others (the same fields)."""
    logger.info(
        "job %s %s attempt %s/%s: lost with worker %s (reported by this worker)%s",
        run.job_id,
        run.task,
        run.attempt,
        run.max_attempts,
        run.worker_id,
        "; no attempts left" if run.retry_in is None else "",
        extra={
            "job_id": run.job_id,
            "task": run.task,
            "queue": run.queue,
            "attempt": run.attempt,
            "max_attempts": run.max_attempts,
            "outcome": "lost",
            "duration": run.duration,
            "retry_in": run.retry_in,
            "error_type": "WorkerLost",
        },
    )
