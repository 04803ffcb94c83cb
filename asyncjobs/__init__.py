"""asyncjobs: an asyncio-native background job runner on PostgreSQL.

A job is never lost and never stuck, and it stops the moment you ask it to.
"""

from .app import App
from .cancel import AttemptNotCurrent, Cancel, CancelReason, CancelToken, Interrupted
from .client.client import Client
from .errors import (
    ArgumentsMismatch,
    AsyncJobsError,
    ConfigurationError,
    ConnectionFailed,
    ConnectionLost,
    DuplicateJob,
    JobCancelled,
    JobFailed,
    JobNotFound,
    MigrationError,
    NoCurrentJob,
    NotInTransaction,
    ScheduleConflict,
    ScheduleNotFound,
    SerializationError,
    UnknownTaskError,
    UnsupportedConnection,
    WaitTimeout,
)
from .hooks import Enqueueing, Hooks, JobOutcome, JobRun
from .job import Job, JobId, JobState, QueueInfo, WorkerInfo
from .job_context import Fence, JobContext, current_job
from .retention import Retention
from .retry import Backoff, Retry
from .schedule import Schedule
from .sync import SyncClient
from .tasks import JobOptions, Task, TaskCall
from .worker.worker import Worker

__all__ = [
    "App",
    "ArgumentsMismatch",
    "AsyncJobsError",
    "AttemptNotCurrent",
    "Backoff",
    "Cancel",
    "CancelReason",
    "CancelToken",
    "Client",
    "ConfigurationError",
    "ConnectionFailed",
    "ConnectionLost",
    "DuplicateJob",
    "Enqueueing",
    "Fence",
    "Hooks",
    "Interrupted",
    "Job",
    "JobCancelled",
    "JobContext",
    "JobFailed",
    "JobId",
    "JobNotFound",
    "JobOptions",
    "JobOutcome",
    "JobRun",
    "JobState",
    "MigrationError",
    "NoCurrentJob",
    "NotInTransaction",
    "QueueInfo",
    "Retention",
    "Retry",
    "Schedule",
    "ScheduleConflict",
    "ScheduleNotFound",
    "SerializationError",
    "SyncClient",
    "Task",
    "TaskCall",
    "UnknownTaskError",
    "UnsupportedConnection",
    "WaitTimeout",
    "Worker",
    "WorkerInfo",
    "current_job",
]
