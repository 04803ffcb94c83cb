"""Every error asyncjobs raises; each says what was wrong and what to do."""

from __future__ import annotations


class AsyncJobsError(Exception):
    """Base class of every error asyncjobs raises."""


class ConfigurationError(AsyncJobsError, ValueError):
    """An option or setting is invalid."""


class ConnectionFailed(AsyncJobsError, ConnectionError):
    """PostgreSQL could not be reached with the configured DSN; nothing was stored.

    `permanent` is True when the server answered and refused: the database doesn't exist,
    or authentication failed. Retrying can't help until the DSN or the server changes, so a
    worker raises it instead of retrying.
    """

    maybe_stored = False
    """Whether what was asked may have been stored anyway (see ConnectionLost)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class ConnectionLost(ConnectionFailed):
    """The connection to PostgreSQL broke during a statement (a server restart, a network
    cut), so whether the statement took effect is not known.

    `maybe_stored` is True when the statement writes (an enqueue, cancel, requeue, delete):
    it may have committed before the connection broke. Retrying an enqueue may then make a
    second job, unless it has a `unique_key` (see README, "Errors and bad input")."""

    def __init__(self, message: str, *, maybe_stored: bool) -> None:
        super().__init__(message)
        self.maybe_stored = maybe_stored


class MigrationError(AsyncJobsError):
    """The database schema is missing, too old, or newer than this asyncjobs."""


class SerializationError(AsyncJobsError, TypeError):
    """A job's arguments or result cannot be stored as JSON."""


class ArgumentsMismatch(AsyncJobsError, TypeError):
    """A job's arguments don't fit its task's signature; nothing was enqueued."""


class UnknownTaskError(AsyncJobsError, LookupError):
    """No task is registered under the given name (in the app, or, for an enqueue by name,
    by any worker that ever ran on the schema)."""


class UnsupportedConnection(AsyncJobsError, TypeError):
    """A transactional enqueue was given a connection object asyncjobs can't enqueue on;
    the message says which ones it can."""


class NotInTransaction(AsyncJobsError):
    """A transactional enqueue was given a connection that is not in a transaction, so the
    job would be committed at once instead of with the caller's work."""


class NoCurrentJob(AsyncJobsError, RuntimeError):
    """`current_job()` was called outside a job run by a worker."""


class JobNotFound(AsyncJobsError, LookupError):
    """No job has the given id (it never existed, or it was deleted)."""


class DuplicateJob(AsyncJobsError):
    """An enqueue with `on_duplicate="raise"` met an active job of its task with its
    unique key; `job_id` is that job. Nothing of that enqueue was stored."""

    def __init__(self, task: str, unique_key: str, job_id: int, state: str) -> None:
        self.task = task
        self.unique_key = unique_key
        self.job_id = job_id
        super().__init__(
            f"task {task!r} already has an active job with unique key {unique_key!r} "
            f"(job {job_id}, {state}); nothing was enqueued. Pass on_duplicate='existing' "
            "to get that job's id instead"
        )


class JobFailed(AsyncJobsError):
    """The job ended in `failed`; `error` holds its last error."""

    def __init__(self, job_id: int, error: dict[str, object] | None) -> None:
        self.job_id = job_id
        self.error = error or {}
        kind = self.error.get("type", "Error")
        message = self.error.get("message", "")
        super().__init__(f"job {job_id} failed: {kind}: {message}")


class JobCancelled(AsyncJobsError):
    """The job ended in `cancelled` (by a client, the CLI, SQL, or itself with `Cancel`)."""

    def __init__(self, job_id: int, reason: str | None = None) -> None:
        self.job_id = job_id
        self.reason = reason
        super().__init__(f"job {job_id} was cancelled" + (f": {reason}" if reason else ""))


class WaitTimeout(AsyncJobsError, TimeoutError):
    """`Client.wait()` gave up before the job finished; the job itself goes on."""


class ScheduleNotFound(AsyncJobsError, LookupError):
    """No schedule has the given name."""


class ScheduleConflict(AsyncJobsError):
    """The schedule's name is taken, or the schedule is declared in code and must be
    changed there."""
