"""asyncjobs: an asyncio-native background job runner on PostgreSQL.

A job is never lost and never stuck, and it stops the moment you ask it to.
"""

from .app import App
from .cancel import CancelReason, CancelToken, Interrupted
from .client import Client
from .errors import (
    AsyncJobsError,
    ConfigurationError,
    ConnectionFailed,
    DuplicateJob,
    JobCancelled,
    JobFailed,
    JobNotFound,
    MigrationError,
    SerializationError,
    UnknownTaskError,
    WaitTimeout,
)
from .job import Job, JobState, WorkerInfo
from .retry import Backoff
from .tasks import JobOptions, Task, TaskCall
from .worker import Worker

__all__ = [
    "App",
    "AsyncJobsError",
    "Backoff",
    "CancelReason",
    "CancelToken",
    "Client",
    "ConfigurationError",
    "ConnectionFailed",
    "DuplicateJob",
    "Interrupted",
    "Job",
    "JobCancelled",
    "JobFailed",
    "JobNotFound",
    "JobOptions",
    "JobState",
    "MigrationError",
    "SerializationError",
    "Task",
    "TaskCall",
    "UnknownTaskError",
    "WaitTimeout",
    "Worker",
    "WorkerInfo",
]
