"""What the client reads back about a job."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import uuid
from collections.abc import Mapping
from typing import Any, Generic, TypeVar

import orjson

R_co = TypeVar("R_co", covariant=True)

# The columns get_job and list_jobs read as JSON text (see _decoded).
_JSON_COLUMNS = ("args", "kwargs", "result", "error", "errors", "log", "checkpoint")


class JobState(enum.StrEnum):
    """Where a job is in its life. succeeded, failed and cancelled are final; awaiting
    means it waits for its parent jobs (`after=`) to succeed."""

    SCHEDULED = "scheduled"
    QUEUED = "queued"
    AWAITING = "awaiting"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        """Whether the job will not run again (unless requeued)."""
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


class JobId(int, Generic[R_co]):
    """A job's id, as `enqueue` returns it: an int (store it, pass it, compare it as one)
    that also carries, for type checkers only, what the task returns, so that
    `await client.wait(job_id)` is typed. `JobId(42)` types a stored id as `JobId[Any]`."""

    __slots__ = ()


@dataclasses.dataclass(frozen=True, slots=True)
class Job(Generic[R_co]):
    """A snapshot of one job's row. `client.get(job_id)` with a `JobId[R]` gives a `Job[R]`,
    whose `result` is an R once the job succeeded (None before)."""

    id: int
    task: str
    queue: str
    priority: int
    args: list[Any]
    kwargs: dict[str, Any]
    state: JobState
    attempt: int
    max_attempts: int
    timeout: float | None
    run_at: datetime.datetime
    worker_id: uuid.UUID | None
    created_at: datetime.datetime
    started_at: datetime.datetime | None
    finished_at: datetime.datetime | None
    result: R_co | None
    error: dict[str, Any] | None
    errors: list[dict[str, Any]]
    # What the running job reported (current_job().progress / .log); the log's lines carry
    # their attempt, and the last 50 are kept.
    progress: float | None = None
    progress_message: str | None = None
    log: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    @property
    def cancel_reason(self) -> str | None:
        """The reason given by a job that raised `asyncjobs.Cancel`, if that is how it ended."""
        if self.state is JobState.CANCELLED and self.error and self.error.get("type") == "Cancel":
            return str(self.error.get("message") or "")
        return None

    unique_key: str | None = None
    parents: list[int] = dataclasses.field(default_factory=list)
    # What the job last saved with current_job().checkpoint(), and when: its next attempt
    # resumes from it. Kept when the job ends; cleared by a requeue unless kept.
    checkpoint: Any = None
    checkpoint_at: datetime.datetime | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any] | Any) -> Job[Any]:
        """Build from a `get_job`/`list_jobs` row."""
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in dict(row).items() if k in fields}
        for name in _JSON_COLUMNS:
            if isinstance(values.get(name), str):
                values[name] = _decoded(values[name])
        for name in ("errors", "log"):
            # Read line by line with .get() by the CLI: anything else is shown as a line.
            entries = values[name]
            if not isinstance(entries, list):
                entries = [entries]
            values[name] = [e if isinstance(e, dict) else {"message": e} for e in entries]
        values["state"] = JobState(values["state"])
        values["worker_id"] = _plain_uuid(values["worker_id"])
        return cls(**values)


@dataclasses.dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A row of the `workers` table: one running worker process."""

    id: uuid.UUID
    host: str
    pid: int
    queues: list[str]
    concurrency: int
    running: int
    started_at: datetime.datetime
    heartbeat_at: datetime.datetime
    stop_requested_at: datetime.datetime | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any] | Any) -> WorkerInfo:
        """Build from a `list_workers` row."""
        values = dict(row)
        values["id"] = _plain_uuid(values["id"])
        return cls(**values)


@dataclasses.dataclass(frozen=True, slots=True)
class QueueInfo:
    """One queue as `client.queues()` sees it: its unfinished jobs by state, whether it is
    paused, and how long its oldest due job has waited."""

    name: str
    queued: int
    scheduled: int
    awaiting: int
    processing: int
    """Jobs running now (the running count)."""
    paused: bool
    paused_at: datetime.datetime | None
    oldest_wait: float | None
    """Seconds the oldest due (queued) job has waited; None when none waits."""
    workers: int
    """Workers serving this queue (not stopping)."""

    @classmethod
    def from_row(cls, row: Mapping[str, Any] | Any) -> QueueInfo:
        """Build from a `list_queues` row."""
        return cls(**dict(row))


def _decoded(text: str) -> Any:
    """A JSON column's value; its text when orjson can't read it (written by plain SQL: a
    number beyond float or int64, nesting deeper than 1024), so one odd row can't stop a
    listing."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def _plain_uuid(value: uuid.UUID | None) -> uuid.UUID | None:
    # asyncpg returns its own uuid.UUID subclass; users get the standard type.
    return None if value is None else uuid.UUID(bytes=value.bytes)
