"""What a running job can ask about itself and report: `asyncjobs.current_job()`."""

from __future__ import annotations

import contextvars
import datetime
import threading
from collections.abc import Callable
from typing import Any

from . import validation
from .cancel import CancelToken
from .errors import ConfigurationError, NoCurrentJob
from .serialization import without_nul

# What a job reported since the last write: its latest progress (fraction, message), if
# any, and its new log lines.
Taken = tuple[tuple[float, str | None] | None, list[dict[str, Any]]]

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


class JobContext:
    """One attempt of a running job: who it is, its cancel token, and its progress reports.

    `progress()` and `log()` only change memory (thread-safe, cheap enough to call in a
    tight loop); the worker writes the latest state in batches, at most every half second
    and once more when the attempt ends, and never for an attempt that was stopped.
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
    def pending(self) -> bool:
        """Whether something reported is not taken for writing yet."""
        return self._progress is not None or bool(self._lines)

    def take(self) -> Taken | None:
        """What changed since the last call (for the worker's writer), or None."""
        with self._lock:
            if self._progress is None and not self._lines:
                return None
            taken = (self._progress, self._lines)
            self._progress, self._lines = None, []
            return taken

    def give_back(self, taken: Taken) -> None:
        """Put back what a failed write took, under anything reported since."""
        progress, lines = taken
        with self._lock:
            if self._progress is None:
                self._progress = progress
            self._lines[:0] = lines
            del self._lines[:-LOG_LINES]
        self._changed()

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(self)


def enter(context: JobContext) -> contextvars.Token[JobContext]:
    """Make `context` the current job's (the runner does this around the job's code)."""
    return _current.set(context)


def leave(token: contextvars.Token[JobContext]) -> None:
    """Undo `enter`."""
    _current.reset(token)
