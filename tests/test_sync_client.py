"""SyncClient: enqueueing from code without an event loop (these tests are plain functions,
as a Django view or a script is), in its own transaction on psycopg and Django, and reading
the job back; a real worker runs what was committed."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

import asyncjobs
from tests.helpers import Spawn
from tests.integrations import configure_django, psycopg_sync
from tests.worker_app import quick


@pytest.fixture
def jobs(pg_dsn: str, schema: str) -> Iterator[asyncjobs.SyncClient]:
    with asyncjobs.App(pg_dsn, schema=schema).sync_client(allow_unknown_tasks=True) as jobs:
        yield jobs


def _wait(jobs: asyncjobs.SyncClient, job_id: int, timeout: float = 30) -> asyncjobs.Job:
    deadline = time.monotonic() + timeout
    while True:
        job = jobs.get(job_id)
        if job.state.finished:
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.02)


def test_enqueue_and_get_without_an_event_loop(
    jobs: asyncjobs.SyncClient, spawn_worker: Spawn
) -> None:
    job_id = jobs.enqueue(quick, 7)
    by_name = jobs.enqueue("quick", 8)
    assert jobs.get(job_id).state is asyncjobs.JobState.QUEUED
    spawn_worker()
    assert _wait(jobs, job_id).result == 7
    assert _wait(jobs, by_name).result == 8
    with pytest.raises(asyncjobs.JobNotFound):
        jobs.get(999_999)


def test_enqueue_tx_on_psycopg_commits_and_rolls_back_with_the_caller(
    jobs: asyncjobs.SyncClient, pg_dsn: str, spawn_worker: Spawn
) -> None:
    with psycopg_sync(pg_dsn) as conn:
        with conn.transaction():
            kept = jobs.enqueue_tx(conn, quick, 1)
            many = jobs.enqueue_many_tx(conn, [quick.call(2), quick.call(3)])
        with pytest.raises(ZeroDivisionError), conn.transaction():
            dropped = jobs.enqueue_tx(conn, quick, 4)
            _ = 1 / 0
    with pytest.raises(asyncjobs.JobNotFound):
        jobs.get(dropped)
    assert isinstance(kept, asyncjobs.JobId)  # typed with the task's result, as enqueue's
    spawn_worker()
    assert [_wait(jobs, i).result for i in [kept, *many]] == [1, 2, 3]


def test_enqueue_tx_in_a_django_atomic_block(
    jobs: asyncjobs.SyncClient, pg_dsn: str, spawn_worker: Spawn
) -> None:
    configure_django(pg_dsn)
    from django.db import connection, transaction

    try:
        with transaction.atomic():
            kept = jobs.enqueue_tx(connection, quick, 5)
            with pytest.raises(RuntimeError), transaction.atomic():  # a savepoint
                inner = jobs.enqueue_tx(connection, quick, 6)
                raise RuntimeError("the inner block fails")
        with pytest.raises(asyncjobs.NotInTransaction, match=r"transaction\.atomic\(\)"):
            jobs.enqueue_tx(connection, quick, 7)
    finally:
        connection.close()
    with pytest.raises(asyncjobs.JobNotFound):
        jobs.get(inner)
    spawn_worker()
    assert _wait(jobs, kept).result == 5


def test_bad_input_is_refused_clearly(pg_dsn: str, schema: str) -> None:
    with asyncjobs.App(pg_dsn, schema=schema).sync_client() as jobs:
        with pytest.raises(asyncjobs.UnknownTaskError, match="no worker"):
            jobs.enqueue("quik", 1)
        with (
            psycopg_sync(pg_dsn) as conn,
            pytest.raises(asyncjobs.UnknownTaskError),
            conn.transaction(),
        ):
            jobs.enqueue_tx(conn, "quik", 1)
        with pytest.raises(asyncjobs.UnsupportedConnection, match="psycopg 3 connection"):
            jobs.enqueue_tx(object(), quick, 1)  # type: ignore[call-overload]
        # Nothing to enqueue is refused the same way: the mistake shows before it matters.
        with pytest.raises(asyncjobs.UnsupportedConnection, match="psycopg 3 connection"):
            jobs.enqueue_many_tx(object(), [])  # type: ignore[arg-type]
        with (
            psycopg_sync(pg_dsn, autocommit=True) as conn,
            pytest.raises(asyncjobs.NotInTransaction, match="autocommit"),
        ):
            jobs.enqueue_tx(conn, quick, 1)
        with (
            psycopg_sync(pg_dsn, autocommit=True) as conn,
            pytest.raises(asyncjobs.NotInTransaction, match="autocommit"),
        ):
            jobs.enqueue_many_tx(conn, [])
        with pytest.raises(asyncjobs.ArgumentsMismatch):
            jobs.enqueue(quick, 1, 2)  # type: ignore[call-arg]


def test_it_opens_on_first_use_and_again_after_close(pg_dsn: str, schema: str) -> None:
    jobs = asyncjobs.App(pg_dsn, schema=schema).sync_client(allow_unknown_tasks=True)
    assert jobs._portal is None  # constructing it started nothing
    first = jobs.enqueue(quick, 1)
    jobs.close()
    assert jobs.get(first).args == [1]
    jobs.close()
    jobs.close()  # closing twice is fine
    assert os.getpid() == jobs._pid
