"""Running one job: its cancel scope, its timeout, its thread if it is sync, its outcome."""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

import anyio

from ..cancel import Cancel, CancelReason, Interrupted
from ..errors import ConfigurationError, SerializationError, UnknownTaskError
from ..job_context import enter, leave
from ..retry import Backoff, Retry
from ..serialization import UnreadableJson, encode_result
from .attempt import Outcome, RunningJob, error_record, hook_outcome

if TYPE_CHECKING:
    from ..tasks import Task

logger = logging.getLogger("asyncjobs.worker")

# PostgreSQL refuses a jsonb string or container over 256 MB (2^28 - 1 bytes, SQLSTATE
# 54000), and a job row is no place for bulk data anyway: a result encoding to more than
# this fails its job, without retries, before anything is sent.
MAX_RESULT_BYTES = 64 * 1024 * 1024


class JobRunner:
    """Runs jobs for one worker; each in its own cancel scope."""

    def __init__(self, tasks: dict[str, Task[Any, Any]], concurrency: int) -> None:
        self._tasks = tasks
        self._threads = anyio.CapacityLimiter(concurrency)

    async def run(self, job: RunningJob) -> Outcome:
        """Run one attempt of `job` and say what to record; never raises for the job's sake."""
        started = time.perf_counter()
        outcome = await self._attempt(job)
        # Checked here so that the hot path formats nothing below INFO; a final failure and
        # a thread left running are WARNINGs, logged even then.
        if outcome.kind in ("failed", "abandon") or logger.isEnabledFor(logging.INFO):
            log_attempt(job, outcome, time.perf_counter() - started)
        return outcome

    async def _attempt(self, job: RunningJob) -> Outcome:
        task = self._tasks.get(job.task)
        if task is None:
            known = ", ".join(sorted(self._tasks)) or "none"
            # Retried: the code that defines it may be deploying right now.
            return self._failure(
                job,
                UnknownTaskError(
                    f"no task named {job.task!r} in this worker (it knows: {known}); "
                    "deploy the code that defines it, or check the name it was enqueued with"
                ),
                None,
            )
        try:
            for stored in (job.args, job.kwargs):
                if isinstance(stored, UnreadableJson):
                    shown = stored if len(stored) <= 100 else stored[:100] + "..."
                    raise TypeError(
                        f"their stored JSON can't be read ({shown}): a number beyond a "
                        "float's range, or nesting deeper than 1024"
                    )
            if not isinstance(job.args, list) or not isinstance(job.kwargs, dict):
                raise TypeError("stored arguments are not a JSON list and object")
            call_args, call_kwargs = task.bind(job.args, job.kwargs, job.token)
        except TypeError as exc:
            # Corrupt arguments fail the same way every time: no retry.
            return self._failure(
                job,
                TypeError(f"arguments of job {job.id} don't fit {task.name}: {exc}"),
                task,
                retry=False,
            )
        # Set before the thread starts: anyio runs a sync job in a copy of this context.
        current = enter(job.context) if job.context is not None else None
        try:
            with job.scope:
                if job.before_run is not None:
                    await job.before_run()
                if job.timeout is not None:
                    job.scope.deadline = anyio.current_time() + job.timeout
                if task.is_async:
                    result = await task.fn(*call_args, **call_kwargs)
                else:
                    result = await self._run_in_thread(job, task, call_args, call_kwargs)
                if job.reason in DECIDED_ELSEWHERE:
                    return self._stopped(job, task)
                return self._success(job, task.name, result)
        except Exception as exc:
            timed_out = job.scope.cancel_called and job.timeout is not None
            if job.reason not in DECIDED_ELSEWHERE and (
                job.thread_ended or (job.reason is None and not timed_out)
            ):
                return self._failure(job, exc, task)
        finally:
            if current is not None:
                leave(current)
        # Stopped: by a state change, the shutdown, the timeout, or a lost claim.
        return self._stopped(job, task)

    async def _run_in_thread(
        self, job: RunningJob, task: Task[Any, Any], args: list[Any], kwargs: dict[str, Any]
    ) -> Any:
        done = anyio.Event()
        # How the thread ended, kept for a stopped job whose thread ran on to its end.
        ended: dict[str, Any] = {}
        # A stop can come before the thread takes the call (at anyio's checkpoint, in the
        # limiter's queue, or with the call queued for a worker thread): then the code must
        # never run, and there is nothing to wait for. Whichever side takes this lock first
        # decides.
        gate = threading.Lock()
        state = {"started": False, "dropped": False}

        def target() -> Any:
            with gate:
                if state["dropped"]:
                    return None
                state["started"] = True
            try:
                ended["result"] = task.fn(*args, **kwargs)
                return ended["result"]
            except BaseException as exc:
                ended["error"] = exc
                raise
            finally:
                anyio.from_thread.run_sync(done.set)

        try:
            return await anyio.to_thread.run_sync(
                target, abandon_on_cancel=True, limiter=self._threads
            )
        except anyio.get_cancelled_exc_class():
            job.token.cancel(job.reason or CancelReason.TIMEOUT)
            with gate:
                started = state["started"]
                state["dropped"] = not started
            if not started:
                raise
            if not job.give_up:
                with anyio.CancelScope(shield=True) as job.thread_wait:
                    await done.wait()
            if not done.is_set():
                job.thread_left = True
                raise
        # Stopped, but the thread finished anyway: what it did is the attempt's outcome
        # (handing back a job that succeeded would run it again).
        job.thread_ended = True
        if "error" in ended:
            raise ended["error"]
        return ended["result"]

    def _success(self, job: RunningJob, task: str, result: Any) -> Outcome:
        try:
            encoded = encode_result(task, result)
        except SerializationError as exc:
            return self._failure(job, exc, None, retry=False)
        if len(encoded) > MAX_RESULT_BYTES:
            too_big = SerializationError(
                f"the result of task {task!r} is {len(encoded)} bytes of JSON, over the "
                f"limit of {MAX_RESULT_BYTES}; store large data elsewhere (a file, object "
                "storage, a table of yours) and return a reference to it"
            )
            return self._failure(job, too_big, None, retry=False)
        return Outcome("succeeded", result=encoded)

    def _stopped(self, job: RunningJob, task: Task[Any, Any] | None) -> Outcome:
        if job.thread_left:
            return Outcome("abandon")
        if job.reason is None:
            job.reason = CancelReason.TIMEOUT
            job.token.cancel(CancelReason.TIMEOUT)
        if job.reason is CancelReason.TIMEOUT:
            return self._failure(
                job, TimeoutError(f"job exceeded its timeout of {job.timeout}s"), task
            )
        if job.reason in (CancelReason.SHUTDOWN, CancelReason.LEASE_LOST):
            return Outcome("release")
        return Outcome("discard")

    def _failure(
        self, job: RunningJob, exc: BaseException, task: Task[Any, Any] | None, retry: bool = True
    ) -> Outcome:
        """Decide what an attempt that raised `exc` leads to.

        Cancel: cancelled. Otherwise a retry while attempts remain, unless `retry` is False
        or the task's `retry_on`/`fail_on` say this exception fails at once. The wait is
        Retry's own delay, else the job's per-call backoff, else the task's.
        """
        if isinstance(exc, Interrupted) and job.reason is not None:
            return self._stopped(job, task)
        error = error_record(exc, job.attempt)
        if isinstance(exc, Cancel):
            return Outcome("cancelled", error=error)
        retryable = retry and (task is None or isinstance(exc, Retry) or task.retries(exc))
        if not retryable or job.attempt >= job.max_attempts:
            return Outcome("failed", error=error)
        if isinstance(exc, Retry) and exc.delay is not None:
            delay = exc.delay
        else:
            delay = self._backoff(job, task).delay(job.attempt)
        return Outcome("retry", error=error, delay=delay)

    def _backoff(self, job: RunningJob, task: Task[Any, Any] | None) -> Backoff:
        if isinstance(job.backoff, dict):
            try:
                return Backoff.from_json(job.backoff)
            except (KeyError, TypeError, ConfigurationError) as exc:
                logger.warning("job %s has an unreadable backoff %r: %s", job.id, job.backoff, exc)
        return task.backoff if task is not None else Backoff()


# Stops after which nothing the attempt did is written, even if its code (a thread that
# ran on) returned: the job's row was changed by whoever stopped it, or its claim is lost
# (the recorder drops the outcome; another attempt may run by now). What it did is dropped,
# and hooks and logs say so, not "succeeded".
DECIDED_ELSEWHERE = frozenset(
    {
        CancelReason.CANCELLED,
        CancelReason.REQUEUED,
        CancelReason.DELETED,
        CancelReason.CLAIM_LOST,
        CancelReason.SUPERSEDED,
    }
)

# How an attempt stopped from outside ends, in the words of whoever stopped it (the
# outcomes `release` and `discard` are internal): what happened, and why.
_STOPPED = {
    CancelReason.CANCELLED: ("stopped", ": cancelled by a user"),
    CancelReason.REQUEUED: ("stopped", ": requeued by a user (it runs again from attempt 1)"),
    CancelReason.DELETED: ("stopped", ": deleted by a user"),
    CancelReason.CLAIM_LOST: (
        "stopped",
        ": its claim connection was lost (the job is back in the queue for another worker)",
    ),
    CancelReason.SHUTDOWN: (
        "returned to the queue",
        " (worker shutting down); the attempt is not counted",
    ),
    CancelReason.LEASE_LOST: (
        "returned to the queue",
        " (the worker's lease session was lost); the attempt is not counted",
    ),
}


def log_attempt(job: RunningJob, outcome: Outcome, seconds: float) -> None:
    """Log what became of one attempt: how long it ran, and what happens to the job next.
    The line carries the same as fields, for structured logs (observability/logs.py)."""
    head = f"job {job.id} {job.task} attempt {job.attempt}/{job.max_attempts}"
    error = f" ({outcome.error['type']}: {outcome.error['message']})" if outcome.error else ""
    extra = {
        "job_id": job.id,
        "task": job.task,
        "queue": job.queue,
        "attempt": job.attempt,
        "max_attempts": job.max_attempts,
        "outcome": hook_outcome(outcome, job.reason),
        "duration": round(seconds, 6),
        "retry_in": outcome.delay if outcome.kind == "retry" else None,
        "error_type": outcome.error["type"] if outcome.error else None,
    }
    if outcome.kind == "succeeded":
        logger.info("%s: succeeded in %.3fs", head, seconds, extra=extra)
    elif outcome.kind == "retry":
        # The delay is the backoff chosen just now, not the attempt's run time.
        logger.info(
            "%s: %s after %.3fs%s; retry %s/%s in %.2fs",
            head,
            "asked for a retry" if outcome.error and outcome.error["type"] == "Retry" else "failed",
            seconds,
            error,
            job.attempt + 1,
            job.max_attempts,
            outcome.delay,
            extra=extra,
        )
    elif outcome.kind == "failed":
        last = job.attempt >= job.max_attempts
        logger.warning(
            "%s: failed after %.3fs%s; %s",
            head,
            seconds,
            error,
            "no attempts left" if last else "not retried (this error fails the job at once)",
            extra=extra,
        )
    elif outcome.kind == "cancelled":
        logger.info(
            "%s: cancelled by the job itself after %.3fs%s", head, seconds, error, extra=extra
        )
    elif outcome.kind == "abandon":
        # Not handed back: its code still runs, and must not run twice at once.
        logger.warning(
            "%s: its thread still runs after %.3fs and a forced stop does not wait for it; "
            "the job runs again once this process has exited (this attempt counts as lost)",
            head,
            seconds,
            extra=extra,
        )
    else:
        what, why = _STOPPED.get(job.reason, ("stopped", f": {job.reason}"))  # type: ignore[arg-type]
        if job.thread_ended and outcome.kind == "discard":
            why += "; its thread ran on to its end, and what it did is not written"
        logger.info("%s: %s after %.3fs%s", head, what, seconds, why, extra=extra)
