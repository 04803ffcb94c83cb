"""What a failed attempt leads to, the runner's decision table (no database; the tests
are async only because anyio's objects want an event loop). Cancel ends the job; a failure
is retried while attempts remain, unless the task's retry_on/fail_on say otherwise or it
can't succeed (corrupt arguments; an unknown task is retried); the wait is Retry's delay,
else the job's per-call backoff, else the task's; a stopped attempt is released, discarded
or, for its timeout, failed."""

from __future__ import annotations

from typing import Any

import pytest

import asyncjobs
from asyncjobs.cancel import CancelReason, Interrupted
from asyncjobs.worker.attempt import RunningJob
from asyncjobs.worker.runner import JobRunner

APP = asyncjobs.App("postgresql://unused")
STEADY = asyncjobs.Backoff(base=1.0, cap=60.0, jitter=False)


@APP.task(retry=STEADY)
async def plain() -> None: ...


@APP.task(retry=STEADY, retry_on=OSError, fail_on=FileNotFoundError)
async def picky() -> None: ...


@APP.task(retry=STEADY)
async def takes_two(a: int, b: int) -> None: ...


def runner() -> JobRunner:
    """A runner of APP's tasks (made inside a test: anyio objects need the event loop)."""
    return JobRunner(APP.tasks, concurrency=1)


def job(attempt: int = 1, max_attempts: int = 3, **fields: Any) -> RunningJob:
    values: dict[str, Any] = {
        "id": 1,
        "entry": 1,
        "attempt": attempt,
        "max_attempts": max_attempts,
        "task": plain.name,
        "args": [],
        "kwargs": {},
        "timeout": None,
        "queue": "default",
        "claim": None,
    }
    values.update(fields)
    return RunningJob(**values)


def decide(exc: BaseException, running: RunningJob | None = None, task: Any = plain) -> Any:
    return runner()._failure(running or job(), exc, task)


async def test_cancel_ends_the_job_with_its_reason() -> None:
    outcome = decide(asyncjobs.Cancel("not needed"))
    assert outcome.kind == "cancelled"
    assert outcome.error["type"] == "Cancel" and outcome.error["message"] == "not needed"


async def test_cancel_wins_even_on_the_last_attempt() -> None:
    assert decide(asyncjobs.Cancel(), job(attempt=3)).kind == "cancelled"


@pytest.mark.parametrize(("attempt", "delay"), [(1, 1.0), (2, 2.0)])
async def test_a_failure_waits_the_tasks_backoff(attempt: int, delay: float) -> None:
    outcome = decide(ValueError("x"), job(attempt=attempt))
    assert (outcome.kind, outcome.delay) == ("retry", delay)
    assert outcome.error["type"] == "ValueError" and outcome.error["attempt"] == attempt


async def test_the_last_attempt_fails() -> None:
    outcome = decide(ValueError("x"), job(attempt=3, max_attempts=3))
    assert outcome.kind == "failed" and outcome.error["message"] == "x"


async def test_retry_with_a_delay_waits_that_long() -> None:
    assert (decide(asyncjobs.Retry(delay=7)).kind, decide(asyncjobs.Retry(delay=7)).delay) == (
        "retry",
        7.0,
    )


async def test_retry_without_a_delay_waits_the_backoff() -> None:
    assert decide(asyncjobs.Retry(), job(attempt=2)).delay == 2.0


async def test_retry_on_the_last_attempt_fails() -> None:
    outcome = decide(asyncjobs.Retry(delay=1), job(attempt=3))
    assert outcome.kind == "failed" and outcome.error["type"] == "Retry"


async def test_retry_is_retried_whatever_retry_on_says() -> None:
    assert decide(asyncjobs.Retry(), task=picky).kind == "retry"


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (ConnectionError("down"), "retry"),  # an OSError
        (FileNotFoundError("gone"), "failed"),  # fail_on wins over retry_on
        (ValueError("bad"), "failed"),  # not in retry_on
    ],
)
async def test_retry_on_and_fail_on(exc: BaseException, kind: str) -> None:
    assert decide(exc, task=picky).kind == kind


async def test_the_per_call_backoff_wins_over_the_tasks() -> None:
    stored = {"base": 10.0, "cap": 60.0, "jitter": False}
    assert decide(ValueError(), job(attempt=2, backoff=stored)).delay == 20.0


async def test_an_unreadable_per_call_backoff_falls_back_to_the_tasks() -> None:
    assert decide(ValueError(), job(attempt=2, backoff={"base": "x"})).delay == 2.0


async def test_an_unknown_task_is_retried_with_the_default_backoff() -> None:
    outcome = decide(asyncjobs.UnknownTaskError("no task"), task=None)
    assert outcome.kind == "retry" and 0 < outcome.delay <= 1.0


async def test_no_retry_fails_at_once() -> None:
    assert runner()._failure(job(), TypeError("corrupt"), plain, retry=False).kind == "failed"


async def test_corrupt_arguments_fail_without_retrying() -> None:
    for args, kwargs in [({"not": "a list"}, {}), ([1], [])]:
        outcome = await runner()._attempt(job(task=takes_two.name, args=args, kwargs=kwargs))
        assert outcome.kind == "failed"
        assert "don't fit" in outcome.error["message"]
    outcome = await runner()._attempt(job(task=takes_two.name, args=[1], kwargs={}))
    assert outcome.kind == "failed" and "takes_two" in outcome.error["message"]


@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        (CancelReason.SHUTDOWN, "release"),  # queued again, attempt not counted
        (CancelReason.LEASE_LOST, "release"),
        (CancelReason.CANCELLED, "discard"),  # whoever stopped it wrote the outcome
        (CancelReason.REQUEUED, "discard"),
        (CancelReason.DELETED, "discard"),
        (CancelReason.CLAIM_LOST, "discard"),
    ],
)
async def test_a_stopped_attempt(reason: CancelReason, kind: str) -> None:
    running = job()
    running.cancel(reason)
    # A sync job's token raised Interrupted: the stop decides, not the exception.
    assert decide(Interrupted(reason), running).kind == kind


@pytest.mark.parametrize(("attempt", "kind"), [(1, "retry"), (3, "failed")])
async def test_a_timeout_is_a_failed_attempt(attempt: int, kind: str) -> None:
    running = job(attempt=attempt, timeout=0.5)
    outcome = runner()._stopped(running, plain)
    assert outcome.kind == kind
    assert outcome.error["type"] == "TimeoutError"
    assert "timeout of 0.5s" in outcome.error["message"]
    assert running.token.reason is CancelReason.TIMEOUT


async def test_an_abandoned_thread_writes_nothing() -> None:
    running = job()
    running.cancel(CancelReason.SHUTDOWN)
    running.thread_left = True
    assert runner()._stopped(running, plain).kind == "abandon"
