"""What a worker does with each control message (no database): a stop broadcast with a
good or unusable grace, a change to a job it runs (matching its attempt's entry or stale),
to a job whose start is in flight or to somebody else's, and a change of the worker ring."""

from __future__ import annotations

import logging
from typing import Any

import pytest

import asyncjobs
from asyncjobs.cancel import CancelReason
from asyncjobs.worker.attempt import RunningJob
from asyncjobs.worker.worker import Worker


class FakeFetcher:
    def __init__(self, starting: bool) -> None:
        self.starting = starting


class FakeWatcher:
    def __init__(self) -> None:
        self.changes = 0

    def ring_changed(self) -> None:
        self.changes += 1


def worker(*, starting: bool = False, grace: float = 3.0) -> Worker:
    made = asyncjobs.App("postgresql://unused").worker(grace=grace)
    made._fetcher = FakeFetcher(starting)  # type: ignore[assignment]
    made._watcher = FakeWatcher()  # type: ignore[assignment]
    return made


def running(w: Worker, job_id: int, entry: int) -> RunningJob:
    values: dict[str, Any] = {"attempt": 1, "max_attempts": 3, "task": "t", "args": []}
    job = RunningJob(
        id=job_id, entry=entry, kwargs={}, timeout=None, queue="q", claim=None, **values
    )
    w.running[job_id] = job
    return job


async def test_workers_means_the_ring_changed() -> None:
    w = worker()
    w._on_control("workers")
    assert w._watcher.changes == 1  # type: ignore[union-attr]
    assert not w.stopping


async def test_stop_with_a_grace() -> None:
    w = worker()
    w._on_control("stop 2.5 all")
    assert w.stopping and w.grace == 2.5


@pytest.mark.parametrize("text", ["soon", "nan", "-1", "inf", ""])
async def test_stop_with_an_unusable_grace_keeps_the_workers_own(
    text: str, caplog: pytest.LogCaptureFixture
) -> None:
    w = worker(grace=3.0)
    with caplog.at_level(logging.WARNING, "asyncjobs.worker"):
        w._on_control(f"stop {text}")
    assert w.stopping and w.grace == 3.0
    assert "unusable grace" in caplog.text


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("cancelled", CancelReason.CANCELLED),
        ("requeued", CancelReason.REQUEUED),
        ("deleted", CancelReason.DELETED),
    ],
)
async def test_a_change_stops_the_attempt_it_names(kind: str, reason: CancelReason) -> None:
    w = worker()
    job = running(w, 5, 70)
    w._on_control(f"{kind} 5 70")
    assert job.reason is reason and job.token.cancelled


async def test_a_stale_entry_leaves_the_running_attempt_alone() -> None:
    # The message is about an earlier attempt (its queue row), not the one running now.
    w = worker()
    job = running(w, 5, 71)
    w._on_control("cancelled 5 70")
    assert job.reason is None


async def test_a_change_reaches_an_attempt_still_stopping_behind_the_next_one() -> None:
    # Requeued while it ran, and its next attempt (row 71) claimed and launched here before
    # the message arrived: the message is about the old attempt, which still stops.
    w = worker()
    old = running(w, 5, 70)
    new = running(w, 5, 71)
    w._superseded[(5, 70)] = old
    w._on_control("requeued 5 70")
    assert old.reason is CancelReason.REQUEUED and new.reason is None


@pytest.mark.parametrize(
    ("asking_entry", "attempt", "reason"),
    [(71, 1, CancelReason.REQUEUED), (70, 2, CancelReason.CLAIM_LOST)],
)
async def test_an_ask_says_why_the_attempt_stops(
    asking_entry: int, attempt: int, reason: CancelReason
) -> None:
    # A newer queue row asking: the job was requeued (its message may come later). The
    # same row at a later attempt: this worker's claim on it was lost.
    w = worker()
    job = running(w, 5, 70)
    w._on_control(f"ask 5 {asking_entry} {attempt} {w.id}")
    assert job.reason is reason and job.release_to == {asking_entry}


async def test_a_change_to_a_job_being_started_waits_for_its_launch() -> None:
    w = worker(starting=True)
    w._on_control("deleted 9 3")
    assert w._early == {(9, 3): CancelReason.DELETED}


async def test_changes_to_other_workers_jobs_are_forgotten() -> None:
    w = worker(starting=True)
    w._on_control("cancelled 9 3")
    w._fetcher.starting = False  # type: ignore[union-attr]
    w._on_control("cancelled 10 4")
    assert w._early == {}


async def test_unknown_kinds_are_ignored() -> None:
    w = worker()
    job = running(w, 5, 70)
    w._on_control("paused 5 70")
    assert job.reason is None and not w.stopping


async def test_a_garbled_change_raises_for_the_listener_to_log() -> None:
    # The listener's dispatch logs what a handler raises and goes on listening.
    with pytest.raises(ValueError):
        worker()._on_control("cancelled five 70")


async def test_a_stop_naming_another_worker_is_not_for_this_one() -> None:
    import uuid

    w = worker()
    w._on_control(f"stop 1 {uuid.uuid4()}")
    assert not w.stopping
    w._on_control(f"stop 1.5 {w.id}")
    assert w.stopping and w.grace == 1.5
