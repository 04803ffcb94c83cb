"""One attempt of a job on this worker: the job as it runs (`RunningJob`), what its
attempt ends in (`Outcome`), and the error record stored for a failed attempt."""

from __future__ import annotations

import dataclasses
import datetime
import math
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal

import anyio

from ..cancel import CancelReason, CancelToken
from ..hooks import JobOutcome
from ..job_context import JobContext
from ..serialization import without_nul

if TYPE_CHECKING:
    from .claims import Claim

# An error's message and traceback are each cut to this many characters (a 140 MB message
# was refused, and held up every outcome after it).
MAX_ERROR_CHARS = 64 * 1024

OutcomeKind = Literal["succeeded", "failed", "cancelled", "retry", "release", "discard", "abandon"]


@dataclasses.dataclass(eq=False, slots=True)
class RunningJob:
    """A job this worker runs: who it is, under which claim, and how to stop it."""

    id: int
    entry: int
    attempt: int
    max_attempts: int
    task: str
    args: Any
    kwargs: Any
    timeout: float | None
    queue: str
    claim: Claim
    # The per-call backoff stored on the row ({"base", "cap", "jitter"}); None: the task's.
    backoff: Any = None
    # What its last attempt saved (current_job().checkpoint), read by the start.
    checkpoint: Any = None
    # For hooks: the enqueue's trace context, and seconds from due to this start.
    trace_context: Any = None
    waited: float | None = None
    # Awaited in the job's scope before its code runs (a takeover's handshake): a stop
    # meanwhile means the code never runs.
    before_run: Callable[[], Awaitable[None]] | None = None
    # The worker that ran this job's last attempt and may still run it, if it was taken
    # over; and the queue rows of later attempts whose workers wait for this one to stop.
    taken_from: uuid.UUID | None = None
    release_to: set[int] = dataclasses.field(default_factory=set)
    # What `current_job()` returns inside the job; the worker attaches its progress writer.
    context: JobContext | None = None
    scope: anyio.CancelScope = dataclasses.field(default_factory=anyio.CancelScope)
    token: CancelToken = dataclasses.field(default_factory=CancelToken)
    reason: CancelReason | None = None
    # Owned by the worker's key rather than its claim since it ran past hand_off_after.
    handed_off: bool = False
    # When it was launched, and when it is to be handed off (time.monotonic, which is
    # also asyncio's clock; anyio.current_time() costs a lookup of the backend per job).
    launched: float = dataclasses.field(default_factory=time.monotonic)
    hand_off_at: float = math.inf
    # A sync job's thread can't be interrupted; after a stop we wait for it, shielded,
    # unless the worker gives up on it (a forced stop of a process that exits next).
    thread_wait: anyio.CancelScope | None = None
    give_up: bool = False
    # Whether a stopped sync job's thread ended anyway (its outcome is then its own), or
    # was given up on while its code may still run (then nothing may hand the job back).
    thread_ended: bool = False
    thread_left: bool = False

    def cancel(self, reason: CancelReason) -> None:
        """Stop the job now. The first reason is the one that counts."""
        if self.reason is None:
            self.reason = reason
        self.token.cancel(self.reason)
        self.scope.cancel()

    def give_up_thread(self) -> None:
        """Stop waiting for the job's thread, if it has one still running after a stop."""
        self.give_up = True
        if self.thread_wait is not None:
            self.thread_wait.cancel()


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """What to write for a finished attempt. `discard`: someone else decided; write nothing.
    `abandon`: the job's thread may still run; write nothing and keep its claim held."""

    kind: OutcomeKind
    result: bytes | None = None
    error: dict[str, Any] | None = None
    delay: float = 0.0
    # A failure written in place of an outcome PostgreSQL refused.
    stands_in: bool = False


def hook_outcome(outcome: Outcome, reason: CancelReason | None) -> JobOutcome:
    """How hooks and metrics name what an attempt ended in (see hooks.JobOutcome)."""
    kind = outcome.kind
    if kind == "succeeded":
        return "succeeded"
    if kind == "cancelled":
        return "cancelled"
    if kind in ("retry", "failed"):
        if reason is CancelReason.TIMEOUT:
            return "timed_out"
        return "retried" if kind == "retry" else "failed"
    if kind == "release":
        return "released"
    if kind == "discard":
        if reason is CancelReason.CANCELLED:
            return "cancelled"
        return "lost" if reason is CancelReason.CLAIM_LOST else "discarded"
    return "lost"  # abandon: the thread is left to the process's exit


def error_record(exc: BaseException, attempt: int) -> dict[str, Any]:
    """An attempt's error as stored: type, message, traceback, attempt, time."""
    return {
        "type": type(exc).__name__,
        "message": without_nul(_cut(str(exc))),
        "traceback": without_nul(_cut("".join(traceback.format_exception(exc)))),
        "attempt": attempt,
        "at": datetime.datetime.now(datetime.UTC).isoformat(),
    }


def _cut(text: str) -> str:
    if len(text) <= MAX_ERROR_CHARS:
        return text
    left = len(text) - MAX_ERROR_CHARS
    return f"{text[:MAX_ERROR_CHARS]}... [cut: {left} more characters]"
