"""A running job stops the moment it is cancelled, requeued or deleted: pushed, not polled."""

from __future__ import annotations

import threading
import time

import anyio
import asyncpg
import pytest

import asyncjobs


async def _until(predicate: object, timeout: float = 10.0) -> None:
    with anyio.fail_after(timeout):
        while not predicate():  # type: ignore[operator]
            await anyio.sleep(0.005)


async def test_cancel_interrupts_a_running_async_job_at_once(
    app: asyncjobs.App, client: asyncjobs.Client
) -> None:
    started, interrupted = anyio.Event(), anyio.Event()

    @app.task
    async def long(token: asyncjobs.CancelToken) -> None:
        started.set()
        try:
            await anyio.sleep(60)
        except anyio.get_cancelled_exc_class():
            assert token.reason is asyncjobs.CancelReason.CANCELLED
            interrupted.set()
            raise

    @app.task
    async def after() -> str:
        return "the worker goes on"

    async with app.worker(concurrency=2):
        job_id = await client.enqueue(long)
        with anyio.fail_after(10):
            await started.wait()
        assert await client.cancel(job_id) is True
        with anyio.fail_after(2):
            await interrupted.wait()
        with pytest.raises(asyncjobs.JobCancelled):
            await client.wait(job_id, timeout=5)
        assert await client.wait(await client.enqueue(after), timeout=10) == "the worker goes on"
    job = await client.get(job_id)
    assert job.state is asyncjobs.JobState.CANCELLED and job.attempt == 1
    assert await client.cancel(job_id) is False  # already finished


async def test_sync_job_sees_its_token_set(app: asyncjobs.App, client: asyncjobs.Client) -> None:
    seen: list[asyncjobs.CancelReason | None] = []
    started = threading.Event()

    @app.task
    def crunch(token: asyncjobs.CancelToken, seconds: float) -> None:
        started.set()
        token.wait(seconds)  # an interruptible sleep, as deep code would do with token.event
        seen.append(token.reason)
        token.raise_if_cancelled()

    async with app.worker():
        job_id = await client.enqueue(crunch, 60)
        await _until(started.is_set)
        cancelled_at = time.monotonic()
        await client.cancel(job_id)
        await _until(lambda: seen)
        assert time.monotonic() - cancelled_at < 2
    assert seen == [asyncjobs.CancelReason.CANCELLED]
    assert (await client.get(job_id)).state is asyncjobs.JobState.CANCELLED


async def test_requeue_of_a_running_job_stops_it_and_runs_it_again(
    app: asyncjobs.App, client: asyncjobs.Client
) -> None:
    runs: list[str] = []

    @app.task
    async def twice() -> str:
        runs.append("start")
        if len(runs) == 1:
            try:
                await anyio.sleep(60)
            except anyio.get_cancelled_exc_class():
                runs.append("interrupted")
                raise
        return "second run"

    async with app.worker():
        job_id = await client.enqueue(twice)
        await _until(lambda: runs)
        await client.requeue(job_id)
        assert await client.wait(job_id, timeout=10) == "second run"
    assert runs == ["start", "interrupted", "start"]
    job = await client.get(job_id)
    assert job.state is asyncjobs.JobState.SUCCEEDED and job.attempt == 1


async def test_delete_of_a_running_job_stops_it(
    app: asyncjobs.App, client: asyncjobs.Client
) -> None:
    runs: list[str] = []

    @app.task
    async def doomed() -> None:
        runs.append("start")
        try:
            await anyio.sleep(60)
        except anyio.get_cancelled_exc_class():
            runs.append("interrupted")
            raise

    async with app.worker() as worker:
        job_id = await client.enqueue(doomed)
        await _until(lambda: runs)
        await client.delete(job_id)
        await _until(lambda: "interrupted" in runs, timeout=2)
        await _until(lambda: not worker.running)
    with pytest.raises(asyncjobs.JobNotFound):
        await client.get(job_id)


async def test_cancel_from_sql_function_works_too(
    app: asyncjobs.App, client: asyncjobs.Client, admin: asyncpg.Connection, schema: str
) -> None:
    interrupted = anyio.Event()

    @app.task
    async def long() -> None:
        try:
            await anyio.sleep(60)
        except anyio.get_cancelled_exc_class():
            interrupted.set()
            raise

    async with app.worker() as worker:
        job_id = await client.enqueue(long)
        await _until(lambda: worker.running)
        assert await admin.fetchval(f'SELECT "{schema}".cancel_job($1)', job_id) == "processing"
        with anyio.fail_after(2):
            await interrupted.wait()


async def test_a_cancel_sent_while_the_listener_is_down_still_lands(
    app: asyncjobs.App, client: asyncjobs.Client, admin: asyncpg.Connection
) -> None:
    interrupted = anyio.Event()

    @app.task
    async def long() -> None:
        try:
            await anyio.sleep(60)
        except anyio.get_cancelled_exc_class():
            interrupted.set()
            raise

    async with app.worker() as worker:
        job_id = await client.enqueue(long)
        await _until(lambda: worker.running)
        pids = await admin.fetch(
            "SELECT pid FROM pg_stat_activity WHERE query LIKE 'LISTEN%' AND application_name = "
            "'asyncjobs' AND pid <> pg_backend_pid()"
        )
        assert pids
        # Cut the listener, then cancel in the gap: the NOTIFY reaches nobody.
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) pid", [r["pid"] for r in pids]
        )
        await client.cancel(job_id)
        with anyio.fail_after(5):
            await interrupted.wait()
    assert (await client.get(job_id)).state is asyncjobs.JobState.CANCELLED


async def test_lost_claim_connection_interrupts_the_job_and_it_never_runs_twice_at_once(
    app: asyncjobs.App, client: asyncjobs.Client, admin: asyncpg.Connection, schema: str
) -> None:
    running = 0
    most = 0
    runs: list[str] = []

    @app.task(max_attempts=5)
    async def guarded() -> str:
        nonlocal running, most
        running += 1
        most = max(most, running)
        runs.append("start")
        try:
            await anyio.sleep(0.5 if len(runs) == 1 else 0.05)
        except anyio.get_cancelled_exc_class():
            runs.append("interrupted")
            raise
        finally:
            running -= 1
        return "done"

    async with app.worker(), app.worker():
        job_id = await client.enqueue(guarded)
        await _until(lambda: runs)
        # The backend holding the claim transaction: the one session that deleted a row of
        # this schema's queue and has not committed (so it has a transaction id; a claim
        # that found nothing has none). Idle claim connections wait inside a begun
        # transaction too, and other tests' workers may share the server.
        claim_pids = await admin.fetch(
            "SELECT DISTINCT l.pid FROM pg_locks AS l JOIN pg_stat_activity AS a USING (pid) "
            "WHERE l.relation = $1::regclass AND l.mode = 'RowExclusiveLock' AND l.granted "
            "AND a.backend_xid IS NOT NULL",
            f'"{app.schema}".queue',
        )
        assert len(claim_pids) == 1
        await admin.execute("SELECT pg_terminate_backend($1)", claim_pids[0]["pid"])
        assert await client.wait(job_id, timeout=10) == "done"
    assert runs[:2] == ["start", "interrupted"]
    assert most == 1
    job = await client.get(job_id)
    assert job.attempt == 2
    assert job.errors[0]["type"] == "WorkerLost"


async def test_concurrency_is_never_exceeded_and_no_attempt_runs_twice(
    app: asyncjobs.App, client: asyncjobs.Client
) -> None:
    running = 0
    most = 0
    seen: list[int] = []

    @app.task
    async def tracked(n: int) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        seen.append(n)
        await anyio.sleep(0.01)
        running -= 1

    ids = await client.enqueue_many(tracked.call(i) for i in range(300))
    async with app.worker(concurrency=3) as first, app.worker(concurrency=3) as second:
        for job_id in ids:
            await client.wait(job_id, timeout=30)
        assert first.concurrency == second.concurrency == 3
    assert sorted(seen) == list(range(300))  # each job ran exactly once
    assert most <= 6
    assert all(j.attempt == 1 for j in await client.list_jobs(limit=300))


async def test_stop_workers_stops_every_worker(
    app: asyncjobs.App, client: asyncjobs.Client
) -> None:
    @app.task
    async def noop() -> None: ...

    async with anyio.create_task_group() as tg:
        workers = [app.worker(), app.worker()]
        for worker in workers:
            await tg.start(worker.run)
        with anyio.fail_after(10):
            while len(await client.workers()) < 2:
                await anyio.sleep(0.01)
        assert await client.stop_workers() == 2
    assert await client.workers() == []


async def test_shutdown_requeues_running_jobs_without_spending_an_attempt(
    app: asyncjobs.App, client: asyncjobs.Client
) -> None:
    started = 0

    @app.task
    async def long() -> None:
        nonlocal started
        started += 1
        await anyio.sleep(60)

    ids = await client.enqueue_many(long.call() for _ in range(5))
    worker = app.worker(concurrency=5)
    async with worker:
        await _until(lambda: started == 5)
        stopped_at = time.monotonic()
    assert time.monotonic() - stopped_at < 2
    for job_id in ids:
        job = await client.get(job_id)
        assert job.state is asyncjobs.JobState.QUEUED and job.attempt == 0


async def test_shutdown_grace_lets_short_jobs_finish(
    app: asyncjobs.App, client: asyncjobs.Client
) -> None:
    started = anyio.Event()

    @app.task
    async def short() -> str:
        started.set()
        await anyio.sleep(0.3)
        return "finished in grace"

    job_id = await client.enqueue(short)
    async with app.worker(grace=5):
        await started.wait()
    assert await client.wait(job_id, timeout=1) == "finished in grace"


async def test_cancel_requeue_and_delete_take_a_waiting_jobs_queue_row_with_them(
    app: asyncjobs.App, client: asyncjobs.Client, admin: asyncpg.Connection, schema: str
) -> None:
    # The queue has no primary key: a row is found by its job's (queue, priority, run_at,
    # entry). Whatever the options, nothing may be left behind, nor a second row appear.
    @app.task(queue="q", priority=3)
    async def noop(n: int) -> None: ...

    later = noop.options(delay=3600, priority=-2)
    ids = [await client.enqueue(task, n) for n, task in enumerate([noop, later] * 3)]

    async def rows(job_id: int) -> list[tuple[object, ...]]:
        found = await admin.fetch(
            "SELECT q.id = j.queue_entry, q.queue, q.priority, q.run_at = j.run_at"
            f' FROM "{schema}".queue AS q JOIN "{schema}".jobs AS j ON j.id = q.job_id'
            " WHERE q.job_id = $1",
            job_id,
        )
        return [tuple(r) for r in found]

    for job_id in ids[:2]:
        assert await client.cancel(job_id)
        assert await rows(job_id) == []
    for job_id in ids[2:4]:
        assert await client.delete(job_id)
        assert await rows(job_id) == []
    for job_id, priority in zip(ids[4:], (3, -2), strict=True):
        assert await client.requeue(job_id)
        assert await rows(job_id) == [(True, "q", priority, True)]
    assert await admin.fetchval(f'SELECT count(*) FROM "{schema}".queue') == 2


async def test_a_stopped_attempts_log_line_says_what_happened_in_plain_words(
    app: asyncjobs.App, client: asyncjobs.Client, caplog: pytest.LogCaptureFixture
) -> None:
    started: set[int] = set()

    @app.task
    async def long(n: int) -> None:
        started.add(n)
        await anyio.sleep(60)

    def line(job_id: int) -> str | None:
        """The first log line about the job's attempt 1, from its attempt number on."""
        for record in caplog.records:
            message = record.getMessage()
            if message.startswith(f"job {job_id} ") and "attempt 1/" in message:
                return message.split(" attempt ", 1)[1]
        return None

    caplog.set_level("INFO", logger="asyncjobs")
    ids = await client.enqueue_many(long.call(n) for n in range(4))
    cancelled, requeued, deleted, kept = ids
    async with app.worker(concurrency=4):
        await _until(lambda: len(started) == 4)
        await client.cancel(cancelled)
        await client.requeue(requeued)
        await client.delete(deleted)
        await _until(lambda: all(line(job_id) for job_id in ids[:3]))

    said = {job_id: line(job_id) or "" for job_id in ids}
    assert said[cancelled].endswith("s: cancelled by a user"), said
    assert said[requeued].endswith("s: requeued by a user (it runs again from attempt 1)"), said
    assert said[deleted].endswith("s: deleted by a user"), said
    for job_id in (cancelled, requeued, deleted):
        assert said[job_id].startswith("1/3: stopped after "), said
    assert said[kept].startswith("1/3: returned to the queue after "), said
    assert said[kept].endswith("s (worker shutting down); the attempt is not counted"), said
    assert not any(w in r.getMessage() for r in caplog.records for w in ("discard", "release"))
