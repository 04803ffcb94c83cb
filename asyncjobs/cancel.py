"""Stopping jobs: why a running job was stopped, the token a sync job reads it from, and
`Cancel`, which a job raises to stop itself for good."""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable

from .errors import AsyncJobsError


class CancelReason(enum.StrEnum):
    """Why a running job's cancel scope was cancelled."""

    CANCELLED = "cancelled"  # cancel_job(): the job ends `cancelled`
    REQUEUED = "requeued"  # requeue_job(): the job runs again from its first attempt
    DELETED = "deleted"  # delete_job(): the job is gone
    SHUTDOWN = "shutdown"  # the worker stops: the job is queued again, attempt not counted
    TIMEOUT = "timeout"  # the job ran past its timeout: a failed attempt
    CLAIM_LOST = "claim_lost"  # the claim connection died: the job may already run elsewhere
    LEASE_LOST = "lease_lost"  # the lease session died: the job is queued again
    # A fence check or a saved checkpoint found the attempt no longer current before the
    # worker heard why (cancelled, requeued, deleted, or run again elsewhere).
    SUPERSEDED = "superseded"


class Interrupted(AsyncJobsError):
    """Raised by `CancelToken.raise_if_cancelled()` once the job has been stopped."""

    def __init__(self, reason: CancelReason) -> None:
        self.reason = reason
        super().__init__(f"job interrupted: {reason.value}")


class AttemptNotCurrent(Interrupted):
    """The running job's attempt is no longer the job's current one: someone cancelled,
    requeued or deleted the job, or it was run again elsewhere. Raised by
    `current_job().check_fence(conn)` (nothing written in that transaction may be
    committed) and `save_checkpoint()` (the checkpoint was not saved)."""

    def __init__(
        self, job_id: int, attempt: int, reason: CancelReason | None, consequence: str
    ) -> None:
        self.job_id = job_id
        self.attempt = attempt
        self.reason = reason or CancelReason.SUPERSEDED
        AsyncJobsError.__init__(
            self,
            f"job {job_id} attempt {attempt} is no longer the job's current attempt "
            f"({self.reason.value}): {consequence}",
        )


# Guards every token's lazy event and callbacks: a token is made for every job and almost
# never waited on from a thread, so it owns no threading objects of its own until then.
_TOKENS = threading.Lock()


class CancelToken:
    """Set the moment a running job is stopped, for code that can't see CancelledError.

    A sync job (run in a thread) asks for one by a parameter annotated `CancelToken`; it is
    set by the same pushed message that cancels async jobs, with no storage round trip.
    Deeper code needs no asyncjobs types: pass it `token.event`, a `threading.Event`.
    """

    __slots__ = ("_callbacks", "_event", "_reason")

    def __init__(self) -> None:
        self._event: threading.Event | None = None
        self._reason: CancelReason | None = None
        self._callbacks: list[Callable[[CancelReason], object]] | None = None

    @property
    def event(self) -> threading.Event:
        """A `threading.Event`, set when the job is stopped."""
        with _TOKENS:
            if self._event is None:
                self._event = threading.Event()
                if self._reason is not None:
                    self._event.set()
            return self._event

    @property
    def cancelled(self) -> bool:
        """Whether the job has been stopped."""
        return self._reason is not None

    @property
    def reason(self) -> CancelReason | None:
        """Why the job was stopped, or None while it may go on."""
        return self._reason

    def raise_if_cancelled(self) -> None:
        """Raise `Interrupted` if the job has been stopped."""
        if self._reason is not None:
            raise Interrupted(self._reason)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job is stopped or `timeout` passes; True if it was stopped.

        `token.wait(5)` is an interruptible `time.sleep(5)`.
        """
        return self.event.wait(timeout)

    def on_cancel(self, callback: Callable[[CancelReason], object]) -> None:
        """Call `callback(reason)` when the job is stopped (at once if it already is).

        It runs on the thread that stops the job (the worker's event loop): keep it short.
        """
        with _TOKENS:
            if self._reason is None:
                if self._callbacks is None:
                    self._callbacks = []
                self._callbacks.append(callback)
                return
            reason = self._reason
        callback(reason)

    def cancel(self, reason: CancelReason) -> None:
        """Set the token (the worker does this; tests of job code may too). Idempotent."""
        with _TOKENS:
            if self._reason is not None:
                return
            self._reason = reason
            callbacks, self._callbacks = self._callbacks or [], None
            event = self._event
        if event is not None:
            event.set()
        for callback in callbacks:
            callback(reason)


class Cancel(Exception):
    """Raise in a job to stop it for good: it ends `cancelled`, with `reason` recorded."""

    def __init__(self, reason: str = "") -> None:
        self.reason = reason
        super().__init__(reason or "cancelled by the job itself")
