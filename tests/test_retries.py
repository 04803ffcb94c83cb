"""Retry policies, Retry(delay), Cancel from inside a job, and what each attempt leaves
behind, against real PostgreSQL."""

from __future__ import annotations

import datetime
import time

import anyio
import pytest

import asyncjobs

ERROR_KEYS = {"type", "message", "traceback", "attempt", "at"}


async def test_fail_on_and_retry_on_decide_which_errors_retry(
    app: asyncjobs.App, client: asyncjobs.Client
) -> None:
    @app.task(
        max_attempts=5,
        retry=asyncjobs.Backoff(base=0.01),
        retry_on=OSError,
        fail_on=FileNotFoundError,
    )
    async def fetch(kind: str) -> None:
        raise {"io": ConnectionError, "missing": FileNotFoundError, "bug": KeyError}[kind](kind)

    io, missing, bug = [await client.enqueue(fetch, k) for k in ("io", "missing", "bug")]
    async with app.worker():
        for job_id in (io, missing, bug):
            with pytest.raises(asyncjobs.JobFailed):
                await client.wait(job_id, timeout=20)
    # OSError retries until max_attempts; fail_on wins over retry_on; KeyError is not in
    # retry_on: both of those fail at their first attempt.
    assert [(await client.get(i)).attempt for i in (io, missing, bug)] == [5, 1, 1]
    job = await client.get(missing)
    assert [e["type"] for e in job.errors] == ["FileNotFoundError"]


@pytest.mark.parametrize("keyed", [False, True], ids=["plain", "with_unique_key"])
async def test_a_per_call_backoff_is_stored_and_used_by_the_worker(
    app: asyncjobs.App, client: asyncjobs.Client, keyed: bool
) -> None:
    @app.task(max_attempts=3, retry=asyncjobs.Backoff(base=0.01))
    async def flaky() -> None:
        raise ConnectionError("down")

    slow = asyncjobs.Backoff(base=1000, cap=5000, jitter=False)
    # A unique key takes the other enqueue statement: both must store the backoff.
    job_id = await client.enqueue(flaky.options(retry=slow, unique_key="k" if keyed else None))
    assert (await client.get(job_id)).state is asyncjobs.JobState.QUEUED
    async with app.worker():
        with anyio.fail_after(20):
            while (job := await client.get(job_id)).state is not asyncjobs.JobState.SCHEDULED:
                await anyio.sleep(0.02)
    # The task's own backoff would have retried within 10 ms; the call's waits 1000 s.
    assert job.attempt == 1
    assert job.errors[0]["type"] == "ConnectionError"
    wait = (job.run_at - datetime.datetime.now(datetime.UTC)).total_seconds()
    assert 900 < wait <= 1000


async def test_retry_delay_is_honoured_and_spends_an_attempt(
    app: asyncjobs.App, client: asyncjobs.Client
) -> None:
    starts: list[float] = []

    @app.task(max_attempts=3, retry=asyncjobs.Backoff(base=1000))
    async def poll() -> str:
        starts.append(time.monotonic())
        if len(starts) < 3:
            raise asyncjobs.Retry(delay=0.3, reason="not ready")
        return "ready"

    job_id = await client.enqueue(poll)
    async with app.worker():
        assert await client.wait(job_id, timeout=20) == "ready"
    job = await client.get(job_id)
    assert job.attempt == 3
    assert [(e["type"], e["attempt"]) for e in job.errors] == [("Retry", 1), ("Retry", 2)]
    assert "in 0.3s: not ready" in job.errors[0]["message"]
    assert all(set(e) >= ERROR_KEYS for e in job.errors)
    # Not before the delay asked for (the task's own backoff would be ~1000 s).
    assert starts[1] - starts[0] >= 0.3 and starts[2] - starts[1] >= 0.3


async def test_retry_in_the_last_attempt_fails_the_job(
    app: asyncjobs.App, client: asyncjobs.Client
) -> None:
    @app.task(max_attempts=2)
    async def never_ready() -> None:
        raise asyncjobs.Retry(delay=0)

    job_id = await client.enqueue(never_ready)
    async with app.worker():
        with pytest.raises(asyncjobs.JobFailed, match="Retry: retry requested in 0s"):
            await client.wait(job_id, timeout=20)
    assert (await client.get(job_id)).attempt == 2


async def test_retry_without_delay_uses_the_backoff_even_against_fail_on(
    app: asyncjobs.App, client: asyncjobs.Client
) -> None:
    @app.task(max_attempts=2, retry=asyncjobs.Backoff(base=500, jitter=False), fail_on=Exception)
    async def later() -> None:
        raise asyncjobs.Retry()

    job_id = await client.enqueue(later)
    async with app.worker():
        with anyio.fail_after(20):
            while (job := await client.get(job_id)).state is not asyncjobs.JobState.SCHEDULED:
                await anyio.sleep(0.02)
    wait = (job.run_at - datetime.datetime.now(datetime.UTC)).total_seconds()
    assert 400 < wait <= 500


@pytest.mark.parametrize("sync", [False, True])
async def test_cancel_inside_a_job_records_the_reason_and_stops(
    app: asyncjobs.App, client: asyncjobs.Client, sync: bool
) -> None:
    runs: list[int] = []

    def body() -> None:
        runs.append(1)
        raise asyncjobs.Cancel("customer closed the account")

    if sync:

        @app.task(name="give_up", max_attempts=5)
        def give_up_sync() -> None:
            body()

        task: asyncjobs.Task[[], None] = give_up_sync
    else:

        @app.task(name="give_up", max_attempts=5)
        async def give_up() -> None:
            body()

        task = give_up

    job_id = await client.enqueue(task)
    async with app.worker():
        with pytest.raises(asyncjobs.JobCancelled, match="customer closed the account") as raised:
            await client.wait(job_id, timeout=20)
        await anyio.sleep(0.3)
    assert raised.value.reason == "customer closed the account"
    job = await client.get(job_id)
    assert job.state is asyncjobs.JobState.CANCELLED and job.attempt == 1
    assert job.cancel_reason == "customer closed the account"
    assert job.finished_at is not None
    assert job.errors[-1]["type"] == "Cancel" and set(job.errors[-1]) >= ERROR_KEYS
    assert runs == [1]


async def test_a_retry_cancelled_during_its_backoff_never_runs_again(
    app: asyncjobs.App, client: asyncjobs.Client
) -> None:
    """Cancel lands at spread-out moments around the retry's due time; a job whose cancel
    found it still waiting (scheduled) must never start its second attempt."""
    runs: dict[int, int] = {}

    @app.task(max_attempts=3)
    async def flaky(n: int) -> None:
        runs[n] = runs.get(n, 0) + 1
        if runs[n] == 1:
            raise asyncjobs.Retry(delay=0.4)
        await anyio.sleep(0.5)

    offsets = [0.1 + 0.03 * i for i in range(16)]  # 0.1 s .. 0.55 s after the first failure
    ids = [await client.enqueue(flaky, n) for n in range(len(offsets))]
    old_states: dict[int, str] = {}

    async def cancel_later(n: int, job_id: int, offset: float) -> None:
        with anyio.fail_after(20):
            while (await client.get(job_id)).state is not asyncjobs.JobState.SCHEDULED:
                await anyio.sleep(0.005)
        await anyio.sleep(offset)
        # The SQL function returns the state the cancel found (pooled: tasks run at once).
        old_states[n] = await client.pool.fetchval(client.sql.cancel_job, job_id)

    async with app.worker(concurrency=len(offsets)):
        async with anyio.create_task_group() as tg:
            for n, (job_id, offset) in enumerate(zip(ids, offsets, strict=True)):
                tg.start_soon(cancel_later, n, job_id, offset)
        await anyio.sleep(1.0)  # anything wrongly still queued would run by now
    for n, job_id in enumerate(ids):
        job = await client.get(job_id)
        assert job.state is asyncjobs.JobState.CANCELLED, n
        if old_states[n] == "scheduled":
            assert runs[n] == 1, f"job {n} ran again after being cancelled in its backoff"
    # The test exercised the race: some cancels found the job waiting.
    assert "scheduled" in old_states.values()


def test_invalid_retry_settings_are_rejected() -> None:
    app = asyncjobs.App("postgresql://unused")
    with pytest.raises(asyncjobs.ConfigurationError, match="retry_on takes exception classes"):
        app.task(retry_on="OSError")  # type: ignore[arg-type]
    with pytest.raises(asyncjobs.ConfigurationError, match="fail_on takes exception classes"):
        app.task(fail_on=(ValueError, 3))  # type: ignore[arg-type]
    with pytest.raises(asyncjobs.ConfigurationError, match=r"asyncjobs\.Backoff"):
        app.task(retry=5)  # type: ignore[arg-type]
    with pytest.raises(asyncjobs.ConfigurationError, match="Backoff base"):
        asyncjobs.Backoff(base=-1)

    @app.task
    async def task() -> None: ...

    with pytest.raises(asyncjobs.ConfigurationError, match=r"asyncjobs\.Backoff"):
        task.options(retry=2.0)  # type: ignore[arg-type]
    with pytest.raises(asyncjobs.ConfigurationError, match="Retry"):
        asyncjobs.Retry(delay=-1)
    assert asyncjobs.Retry(delay=datetime.timedelta(minutes=1)).delay == 60.0


async def test_an_attempts_log_line_says_its_run_time_and_the_retrys_delay(
    app: asyncjobs.App, client: asyncjobs.Client, caplog: pytest.LogCaptureFixture
) -> None:
    # The line once read "retry in 0.001s": that was the attempt's run time, not the wait.
    @app.task(max_attempts=3, retry=asyncjobs.Backoff(base=0.8, jitter=False))
    async def flaky(asked: bool) -> None:
        if asked:
            raise asyncjobs.Retry(delay=0.5, reason="still not")
        raise ValueError("not yet")

    caplog.set_level("INFO", logger="asyncjobs")
    failing = await client.enqueue(flaky.options(max_attempts=2), False)
    asking = await client.enqueue(flaky.options(max_attempts=1), True)
    async with app.worker():
        for job_id in (failing, asking):
            with pytest.raises(asyncjobs.JobFailed):
                await client.wait(job_id, timeout=20)

    def lines(job_id: int) -> list[tuple[str, str]]:
        return [
            (r.levelname, r.getMessage().split(" attempt ", 1)[1])
            for r in caplog.records
            if r.getMessage().startswith(f"job {job_id} ")
        ]

    (level, first), (last_level, last) = lines(failing)
    assert level == "INFO" and first.startswith("1/2: failed after "), first
    assert first.endswith("s (ValueError: not yet); retry 2/2 in 0.80s"), first
    assert last_level == "WARNING" and last.startswith("2/2: failed after "), last
    assert last.endswith("s (ValueError: not yet); no attempts left"), last
    ((level, only),) = lines(asking)
    assert level == "WARNING" and only.startswith("1/1: failed after "), only
    assert only.endswith("s (Retry: retry requested in 0.5s: still not); no attempts left")
