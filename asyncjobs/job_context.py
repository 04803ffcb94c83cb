"""What a running job can ask about itself and report: `asyncjobs.current_job()`."""

from __future__ import annotations

import contextvars
import datetime
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from . import validation
from .cancel import AttemptNotCurrent, CancelToken
from .errors import AsyncJobsError, ConfigurationError, NoCurrentJob, NotInTransaction
from .serialization import encode_checkpoint, loads, without_nul

if TYPE_CHECKING:
    from .client.transactions import Connection

# What a job reported since the last write: its latest progress (fraction, message), if
# any, its new log lines, and its latest checkpoint (JSON; b"null" clears it) with the
# number of the checkpoint() call that made it, if any.
Taken = tuple[tuple[float, str | None] | None, list[dict[str, Any]], tuple[bytes, int] | None]

# What the database keeps of a job's log, and so all a job ever needs to buffer.
LOG_LINES = 50
# Longer lines are cut: the log is for short notes, results belong in the return value.
LOG_LINE_CHARS = 1000

_current: contextvars.ContextVar[JobContext] = contextvars.ContextVar("asyncjobs_current_job")


def current_job() -> JobContext:
    """The running job's context, from inside its code (async, or sync in its thread).

    Raises NoCurrentJob elsewhere. Threads the job starts itself don't inherit it: pass
    them the context object.
    """
    try:
        return _current.get()
    except LookupError:
        raise NoCurrentJob(
            "current_job() is only available inside a job run by a worker; "
            "outside one (tests, scripts), pass what the code needs as arguments"
        ) from None


class Fence(NamedTuple):
    """What `<schema>.attempt_is_current(job_id, entry, attempt)` needs to tell whether a
    running attempt is still the job's current one (see `JobContext.check_fence`)."""

    job_id: int
    entry: int
    attempt: int


class JobContext:
    """One attempt of a running job: who it is, its cancel token, its progress reports and
    its checkpoint.

    `progress()`, `log()` and `checkpoint()` only change memory (thread-safe, cheap enough
    to call in a tight loop); the worker writes the latest state in batches, at most every
    half second and once more when the attempt ends, each write guarded by the attempt.
    A stopped attempt's progress and log are not written; its last checkpoint is, while
    the attempt is still the job's current one (a shutdown hands the job back after it).
    """

    def __init__(
        self,
        *,
        job_id: int,
        entry: int,
        attempt: int,
        max_attempts: int,
        task: str,
        queue: str,
        token: CancelToken,
        on_change: Callable[[JobContext], None] | None = None,
        checkpoint: Any = None,
        save: Callable[[JobContext], Awaitable[None]] | None = None,
        fence_sql: str | None = None,
    ) -> None:
        self.job_id = job_id
        self.entry = entry
        self.attempt = attempt
        self.max_attempts = max_attempts
        self.task = task
        self.queue = queue
        self.token = token
        self._on_change = on_change
        self._lock = threading.Lock()
        self._progress: tuple[float, str | None] | None = None
        self._lines: list[dict[str, Any]] = []
        # The checkpoint the attempt started from (a value), or the last one it saved (JSON).
        self._latest: Any = checkpoint
        self._latest_encoded: bytes | None = None
        # Not written yet: the JSON and the number of the call that made it.
        self._checkpoint: tuple[bytes, int] | None = None
        self._checkpoints = 0
        self._saved = 0
        self._stale = False
        self._save = save
        self._fence_sql = fence_sql

    def __repr__(self) -> str:
        return f"<JobContext job {self.job_id} attempt {self.attempt}/{self.max_attempts}>"

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Report how far the job is, from 0.0 to 1.0, with an optional short message."""
        if not validation.is_number(fraction) or not 0 <= fraction <= 1:
            raise ConfigurationError(f"progress must be a number from 0 to 1, got {fraction!r}")
        text = None if message is None else without_nul(str(message)[:LOG_LINE_CHARS])
        with self._lock:
            self._progress = (float(fraction), text)
        self._changed()

    def log(self, message: str) -> None:
        """Add a short line to the job's log (the last 50 lines are kept)."""
        line = {
            "at": datetime.datetime.now(datetime.UTC).isoformat(),
            "attempt": self.attempt,
            "message": without_nul(str(message)[:LOG_LINE_CHARS]),
        }
        with self._lock:
            self._lines.append(line)
            del self._lines[:-LOG_LINES]
        self._changed()

    @property
    def last_checkpoint(self) -> Any:
        """The job's latest checkpoint: the last one this attempt saved, else the one its
        previous attempts left (what to resume from), else None."""
        with self._lock:
            if self._latest_encoded is not None:
                self._latest, self._latest_encoded = loads(self._latest_encoded), None
            return self._latest

    def checkpoint(self, value: Any) -> None:
        """Save where the job is, as a JSON value (at most 1 MiB; None clears it): the next
        attempt, after a deploy, a crash or a retry, reads it as `last_checkpoint`.

        Written with the next batch (at most half a second later), and before the job is
        handed back by a shutdown or its outcome is written. SerializationError, at this
        call, if the value can't be stored. `await save_checkpoint(value)` waits until it is.
        """
        self._record(value)
        self._changed()

    async def save_checkpoint(self, value: Any) -> None:
        """`checkpoint(value)`, and return once it is committed.

        AttemptNotCurrent if the attempt is no longer the job's current one (nothing was
        saved); ConnectionFailed if it can't be written now (it stays pending, written with
        the next batch). From a sync job's thread:
        `anyio.from_thread.run(job.save_checkpoint, value)`.
        """
        number = self._record(value)
        if self._save is None:
            raise NoCurrentJob("save_checkpoint needs a job run by a worker")
        await self._save(self)
        with self._lock:
            if self._saved >= number:
                return
            stale = self._stale
        if stale:
            raise AttemptNotCurrent(
                self.job_id, self.attempt, self.token.reason, "the checkpoint was not saved"
            )
        raise AsyncJobsError(
            f"job {self.job_id}: the database refused its checkpoint (see the worker's log)"
        )

    def _record(self, value: Any) -> int:
        encoded = encode_checkpoint(value)
        with self._lock:
            self._checkpoints += 1
            self._checkpoint = (encoded, self._checkpoints)
            self._latest, self._latest_encoded = None, encoded
            return self._checkpoints

    @property
    def fence(self) -> Fence:
        """The arguments of `<schema>.attempt_is_current(job_id, entry, attempt)`, for a
        write of the job's own, in its own transaction, that must happen only while this
        attempt is the job's current one."""
        return Fence(self.job_id, self.entry, self.attempt)

    async def check_fence(self, conn: Connection) -> None:
        """Raise AttemptNotCurrent unless this attempt is still the job's current one.

        Run it on your connection inside your transaction, before you commit what the job
        writes there: the job's row stays locked (FOR SHARE) until that transaction ends,
        so no cancel, requeue, delete or next attempt can commit in between. Keep that
        transaction short: the worker's own writes about the job wait for it too.

        `conn`: what `enqueue_tx` takes (asyncpg, SQLAlchemy's AsyncConnection or
        AsyncSession, psycopg 3, Django's connection inside `transaction.atomic()`).
        ConfigurationError outside a transaction.
        """
        from .client.transactions import FENCE, fetch_value

        if self._fence_sql is None:
            raise NoCurrentJob("check_fence needs a job run by a worker")
        try:
            current = await fetch_value(conn, self._fence_sql, self.fence, FENCE)
        except NotInTransaction as exc:
            raise ConfigurationError(str(exc)) from None
        if not current:
            raise AttemptNotCurrent(
                self.job_id,
                self.attempt,
                self.token.reason,
                "roll back what this transaction wrote for it",
            )

    @property
    def pending(self) -> bool:
        """Whether something reported is not taken for writing yet."""
        return self._progress is not None or bool(self._lines) or self._checkpoint is not None

    def take(self) -> Taken | None:
        """What changed since the last call (for the worker's writer), or None."""
        with self._lock:
            if self._progress is None and not self._lines and self._checkpoint is None:
                return None
            taken = (self._progress, self._lines, self._checkpoint)
            self._progress, self._lines, self._checkpoint = None, [], None
            return taken

    def give_back(self, taken: Taken) -> None:
        """Put back what a failed write took, under anything reported since."""
        progress, lines, checkpoint = taken
        with self._lock:
            if self._progress is None:
                self._progress = progress
            if self._checkpoint is None:
                self._checkpoint = checkpoint
            self._lines[:0] = lines
            del self._lines[:-LOG_LINES]
        self._changed()

    def written(self, taken: Taken) -> None:
        """What `taken` held is committed (the writer says so)."""
        checkpoint = taken[2]
        if checkpoint is not None:
            with self._lock:
                self._saved = max(self._saved, checkpoint[1])

    def refused(self) -> None:
        """The database refused a write of this attempt's: it is no longer current."""
        with self._lock:
            self._stale = True

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(self)


def enter(context: JobContext) -> contextvars.Token[JobContext]:
    """Make `context` the current job's (the runner does this around the job's code)."""
    return _current.set(context)


def leave(token: contextvars.Token[JobContext]) -> None:
    """Undo `enter`."""
    _current.reset(token)
