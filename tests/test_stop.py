"""Stopping workers with real processes: grace across heartbeats, forced stops of sync jobs,
outcomes PostgreSQL refuses, control messages for jobs waiting to start, bad seconds."""

from __future__ import annotations

import math
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import asyncpg
import pytest

import asyncjobs
from tests.helpers import read_marks, run_cli, until, workers_up

Spawn = Callable[..., subprocess.Popen[str]]


async def exited(proc: subprocess.Popen[str], timeout: float) -> tuple[int, str]:
    with anyio.fail_after(timeout):
        while proc.poll() is None:
            await anyio.sleep(0.02)
    return proc.returncode, proc.stdout.read() if proc.stdout else ""


# -- 1. a stop broadcast seen again (heartbeat) is not a second stop -------------------------


async def test_workers_stop_gives_running_jobs_the_whole_grace_across_heartbeats(
    client: asyncjobs.Client, spawn_worker: Spawn, env: dict[str, str]
) -> None:
    """Every heartbeat sees the stop flag again; neither that nor the deploy's one SIGTERM
    may cut the grace short. The job runs for many heartbeats and must finish."""
    worker = spawn_worker("--heartbeat-interval", "0.2")
    await workers_up(client, 1)
    job_id = await client.enqueue("sleep", 6.0)
    await until(client, job_id, lambda j: j.state == "processing")
    stop = await run_cli(env, "workers", "stop", "--grace", "30")
    assert stop.returncode == 0, stop
    await anyio.sleep(1.0)  # five heartbeats
    assert (await client.get(job_id)).state == "processing"  # the SIGTERM comes mid-grace
    worker.send_signal(signal.SIGTERM)
    code, output = await exited(worker, 30)
    assert code == 0, output
    job = await client.get(job_id)
    assert (job.state, job.attempt) == ("succeeded", 1), output


# -- 5. seconds that are not a number of seconds --------------------------------------------


@pytest.mark.parametrize("value", [math.nan, math.inf, -1.0])
async def test_bad_seconds_are_refused_with_a_configuration_error(
    app: asyncjobs.App, client: asyncjobs.Client, value: float
) -> None:
    for name in ("grace", "poll_interval", "heartbeat_interval"):
        with pytest.raises(asyncjobs.ConfigurationError, match=name):
            app.worker(**{name: value})  # type: ignore[arg-type]
    with pytest.raises(asyncjobs.ConfigurationError, match="grace"):
        await client.stop_workers(value)
    with pytest.raises(asyncjobs.ConfigurationError, match="interval"):
        asyncjobs.Retention(interval=value)
    worker = app.worker()
    with pytest.raises(asyncjobs.ConfigurationError, match="grace"):
        worker.stop(value)
    assert not worker.stopping
    assert await client.workers() == []


async def test_bad_seconds_on_the_command_line_are_usage_errors(env: dict[str, str]) -> None:
    cases = [
        ["worker", "tests.worker_app:app", "--grace", "nan"],
        ["worker", "tests.worker_app:app", "--grace", "inf"],
        ["worker", "tests.worker_app:app", "--poll-interval", "nan"],
        ["worker", "tests.worker_app:app", "--heartbeat-interval", "0"],
        ["worker", "tests.worker_app:app", "--prune-interval", "nan"],
        ["workers", "stop", "--grace", "nan"],
        ["workers", "stop", "--grace", "-1"],
    ]
    unreachable = {**env, "ASYNCJOBS_DSN": "postgresql://postgres@127.0.0.1:1/test"}
    results = []
    for command in cases:
        results.append(await run_cli(unreachable, *command))
    for command, done in zip(cases, results, strict=True):
        assert done.returncode == 2, (command, done)
        assert "must be seconds" in done.stderr, (command, done.stderr)
        assert "Traceback" not in done.stderr


@pytest.mark.parametrize("payload", ["'NaN'::float8", "-5", None])
async def test_a_stop_broadcast_with_a_garbage_grace_stops_with_the_workers_own(
    client: asyncjobs.Client,
    spawn_worker: Spawn,
    admin: asyncpg.Connection,
    schema: str,
    payload: str | None,
) -> None:
    """Stored by the SQL function (which a user may call with anything) or a hand-made
    NOTIFY: the worker stops as asked, with its own grace, and loses no attempt."""
    worker = spawn_worker("--grace", "0.2")
    await workers_up(client, 1)
    job_id = await client.enqueue("sleep", 30.0)
    await until(client, job_id, lambda j: j.state == "processing")
    if payload is None:
        await admin.execute("SELECT pg_notify($1, 'stop garbage *')", f"{schema}.control")
    else:
        await admin.execute(f'SELECT "{schema}".stop_workers({payload})')
    code, output = await exited(worker, 15)
    assert code == 0, output
    assert "Traceback" not in output
    job = await client.get(job_id)
    assert (job.state, job.attempt) == ("queued", 0), output


# -- 3. a control message while a taken-over job waits: see test_takeover.py ---------------


# -- 4. sync jobs' threads and stops ---------------------------------------------------------


async def thread_started(path: Path) -> None:
    """Until the sync job `marked` has begun in its thread (a stop before that hands the
    job back at once: nothing runs yet)."""
    with anyio.fail_after(20):
        while not read_marks(path):
            await anyio.sleep(0.01)


@pytest.mark.parametrize("hand_off_after", ["8", "0"], ids=["claimed", "handed-off"])
async def test_a_forced_stop_never_hands_back_a_sync_job_whose_thread_still_runs(
    client: asyncjobs.Client,
    spawn_worker: Spawn,
    *,
    admin: asyncpg.Connection,
    schema: str,
    tmp_path: Path,
    hand_off_after: str,
) -> None:
    """The thread ignores its token. After the second SIGTERM the process must exit soon
    without it, and until then no other worker may start the job: whether its claim or
    its worker's key (handed off) owns the attempt, neither may go before the process."""
    first = spawn_worker("--concurrency", "1", "--hand-off-after", hand_off_after)
    await workers_up(client, 1)
    job_id = await client.enqueue("marked", str(tmp_path / "marks"), 8.0)
    await thread_started(tmp_path / "marks")
    lease = f'SELECT lease FROM "{schema}".jobs WHERE id = $1'
    with anyio.fail_after(10):
        while (await admin.fetchval(lease, job_id) is None) == (hand_off_after == "0"):
            await anyio.sleep(0.01)
    job = await client.get(job_id)
    spawn_worker()
    await workers_up(client, 2)
    first.send_signal(signal.SIGTERM)
    await anyio.sleep(0.3)
    assert first.poll() is None  # waiting for the thread
    first.send_signal(signal.SIGTERM)
    forced_at = time.monotonic()
    with anyio.fail_after(30):
        while first.poll() is None:
            now = await client.get(job_id)
            assert (now.state, now.worker_id, now.attempt) == ("processing", job.worker_id, 1)
            await anyio.sleep(0.01)
    took = time.monotonic() - forced_at
    output = first.stdout.read() if first.stdout else ""
    assert first.returncode == 0, output
    assert took < 4, output  # the thread had about 7 s to go
    assert "Traceback" not in output
    # Said as it is: not "returned to the queue; the attempt is not counted".
    assert f"job {job_id} marked attempt 1/5: its thread still runs after " in output, output
    assert "returned to the queue" not in output, output
    # Its claim rolled back with the process: the other worker runs it, this attempt lost.
    job = await until(client, job_id, lambda j: j.attempt == 2)
    assert job.state == "processing" and job.worker_id not in (None, now.worker_id)
    assert [e["type"] for e in job.errors] == ["WorkerLost"]


async def test_a_sync_job_that_ends_after_a_stop_keeps_its_outcome(
    client: asyncjobs.Client, spawn_worker: Spawn, tmp_path: Path
) -> None:
    """One SIGTERM, no grace: the thread ignores its token and returns. It succeeded: handed
    back instead, it would run again."""
    worker = spawn_worker()
    await workers_up(client, 1)
    job_id = await client.enqueue("marked", str(tmp_path / "marks"), 1.5)
    await thread_started(tmp_path / "marks")
    worker.send_signal(signal.SIGTERM)
    code, output = await exited(worker, 20)
    assert code == 0, output
    job = await client.get(job_id)
    assert (job.state, job.attempt, job.result) == ("succeeded", 1, "marked"), output
    assert [m[0] for m in read_marks(tmp_path / "marks")] == ["start", "end"]


# -- 2. outcomes PostgreSQL can't store -----------------------------------------------------


async def refuse_results(admin: asyncpg.Connection, schema: str, when: str, sqlstate: str) -> None:
    """Make PostgreSQL refuse an outcome, with `sqlstate`, where the SQL condition `when`
    holds for the updated row (OLD and NEW). Each refusal counts in the sequence
    "refusals", which a rollback doesn't undo (see `refused`)."""
    await admin.execute(
        f"""
        CREATE SEQUENCE "{schema}".refusals;
        CREATE FUNCTION "{schema}".refuse() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF {when} THEN
                PERFORM nextval('"{schema}".refusals');
                RAISE EXCEPTION 'refused by the test' USING ERRCODE = '{sqlstate}';
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER refuse BEFORE UPDATE ON "{schema}".jobs
           FOR EACH ROW EXECUTE FUNCTION "{schema}".refuse();
        """
    )


async def refused(admin: asyncpg.Connection, schema: str, times: int) -> None:
    """Until PostgreSQL has refused an outcome `times` times."""
    with anyio.fail_after(20):
        while (
            await admin.fetchval(
                f'SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM "{schema}".refusals'
            )
            < times
        ):
            await anyio.sleep(0.02)


async def test_an_outcome_refused_for_any_reason_fails_alone(
    client: asyncjobs.Client, spawn_worker: Spawn, admin: asyncpg.Connection, schema: str
) -> None:
    """Class 54 (program limit exceeded), as for a result too long for jsonb."""
    await refuse_results(admin, schema, """NEW.result = '"refuse me"'""", "54000")
    worker = spawn_worker("--concurrency", "4")
    await workers_up(client, 1)
    bad = await client.enqueue("echo", "refuse me")
    good = [await client.enqueue("quick", i) for i in range(5)]
    assert [await client.wait(i, timeout=20) for i in good] == list(range(5))
    with pytest.raises(asyncjobs.JobFailed, match="outcome could not be stored"):
        await client.wait(bad, timeout=20)
    assert await client.wait(await client.enqueue("quick", 7), timeout=20) == 7
    worker.send_signal(signal.SIGTERM)
    code, output = await exited(worker, 15)
    assert code == 0, output


async def test_an_attempt_whose_every_outcome_is_refused_runs_again(
    client: asyncjobs.Client, spawn_worker: Spawn, admin: asyncpg.Connection, schema: str
) -> None:
    """Its failure is refused too: the attempt is given up (its claim rolls back) rather
    than written again forever, holding up the others and the shutdown."""
    await refuse_results(
        admin,
        schema,
        """OLD.args = '["refuse always"]' AND NEW.state IN ('succeeded', 'failed')""",
        "23514",
    )
    worker = spawn_worker()
    await workers_up(client, 1)
    bad = await client.enqueue("echo", "refuse always")
    await until(client, bad, lambda j: j.state == "processing")
    await anyio.sleep(0.5)
    worker.send_signal(signal.SIGTERM)
    code, output = await exited(worker, 15)
    assert code == 0, output
    await admin.execute(f'DROP TRIGGER refuse ON "{schema}".jobs')
    # Each given-up attempt ran again (as after a crash, so attempts are spent); the job
    # ends as soon as its outcome can be stored.
    spawn_worker()
    job = await until(client, bad, lambda j: j.state in ("succeeded", "failed"))
    assert job.attempt >= 2, job
    assert {e["type"] for e in job.errors} == {"WorkerLost"}, job


async def test_a_progress_report_refused_for_any_reason_is_dropped_alone(
    client: asyncjobs.Client, spawn_worker: Spawn, admin: asyncpg.Connection, schema: str
) -> None:
    """Class 54, as for a report too big for jsonb: the refused report is dropped, and the
    lines reported after it (and the other jobs' reports) are written, not held behind it."""
    await refuse_results(
        admin,
        schema,
        """OLD.args = '[7, 0.1]' AND NEW.log::text LIKE '%"step 1 done"%'""",
        "54000",
    )
    worker = spawn_worker()
    await workers_up(client, 1)
    bad = await client.enqueue("progressing", 7, 0.1)
    good = await client.enqueue("progressing", 5, 0.1)
    assert [await client.wait(i, timeout=20) for i in (bad, good)] == ["done", "done"]
    lines = {i: [line["message"] for line in (await client.get(i)).log] for i in (bad, good)}
    assert "step 1 done" not in lines[bad] and "step 6 done" in lines[bad], lines
    assert lines[good] == [f"step {i} done" for i in range(5)], lines
    worker.send_signal(signal.SIGTERM)
    code, output = await exited(worker, 15)
    assert code == 0, output


async def test_a_start_refused_for_one_job_fails_that_job_alone(
    client: asyncjobs.Client, spawn_worker: Spawn, admin: asyncpg.Connection, schema: str
) -> None:
    """PostgreSQL refuses one claimed job's start (a trigger here; a value written by plain
    SQL can do the same). Before, its whole claim rolled back, and every claim after took
    it again with the jobs queued behind it: none of them ever started."""
    await refuse_results(
        admin, schema, """OLD.args = '[-7]' AND NEW.state = 'processing'""", "23514"
    )
    worker = spawn_worker("--concurrency", "4")
    await workers_up(client, 1)
    # Paused, so that one claim takes the refused job and the others together.
    await client.pause_queue("default")
    bad = await client.enqueue("quick", -7)
    good = [await client.enqueue("quick", i) for i in range(5)]
    await client.resume_queue("default")
    assert [await client.wait(i, timeout=20) for i in good] == list(range(5))
    with pytest.raises(asyncjobs.JobFailed, match="PostgreSQL refused to start this job"):
        await client.wait(bad, timeout=20)
    job = await client.get(bad)
    assert (job.attempt, [e["type"] for e in job.errors]) == (0, ["StartRefused"]), job
    assert await client.wait(await client.enqueue("quick", 7), timeout=20) == 7
    worker.send_signal(signal.SIGTERM)
    code, output = await exited(worker, 15)
    assert code == 0, output
    assert "Traceback" not in output


async def test_an_outcome_held_up_by_a_lock_timeout_is_written_once_the_row_is_free(
    client: asyncjobs.Client,
    spawn_worker: Spawn,
    admin: asyncpg.Connection,
    schema: str,
    pg_dsn: str,
) -> None:
    """A lock_timeout (set for the role or the database; here in the worker's DSN) that runs
    out while another session holds the job's row blames the lock, not the outcome. Taken
    for a refusal, the attempt's success was thrown away and the job ran a second time."""
    separator = "&" if "?" in pg_dsn else "?"
    spawn_worker(env={"ASYNCJOBS_DSN": f"{pg_dsn}{separator}lock_timeout=100"})
    await workers_up(client, 1)
    job_id = await client.enqueue("sleep", 0.5)
    await until(client, job_id, lambda j: j.state == "processing")
    async with admin.transaction():
        await admin.execute(f'SELECT FROM "{schema}".jobs WHERE id = $1 FOR UPDATE', job_id)
        await anyio.sleep(2.5)  # the attempt ends meanwhile; its outcome waits for the row
    assert await client.wait(job_id, timeout=20) == "slept"
    job = await client.get(job_id)
    assert (job.attempt, job.errors) == (1, []), job


async def test_a_forced_stop_gives_up_on_outcomes_that_cannot_be_written(
    client: asyncjobs.Client, spawn_worker: Spawn, admin: asyncpg.Connection, schema: str
) -> None:
    """Class 53 (insufficient resources) blames the server: the outcome is retried, and a
    first SIGTERM waits for it. A second must not: the claim rolls back, nothing is lost."""
    await refuse_results(admin, schema, """NEW.result = '"disk full"'""", "53100")
    worker = spawn_worker()
    await workers_up(client, 1)
    job_id = await client.enqueue("echo", "disk full")
    await refused(admin, schema, 2)  # its outcome is being retried
    worker.send_signal(signal.SIGTERM)
    await anyio.sleep(0.5)
    assert worker.poll() is None
    worker.send_signal(signal.SIGTERM)
    code, output = await exited(worker, 15)
    assert code == 0, output
    assert "giving up on the outcomes of jobs" in output, output
    await admin.execute(f'DROP TRIGGER refuse ON "{schema}".jobs')
    spawn_worker()
    assert await client.wait(job_id, timeout=20) == "disk full"


async def test_a_huge_result_fails_and_a_huge_error_message_is_cut(
    client: asyncjobs.Client, spawn_worker: Spawn
) -> None:
    from asyncjobs.worker.attempt import MAX_ERROR_CHARS
    from asyncjobs.worker.runner import MAX_RESULT_BYTES
    from tests.worker_app import big_error, big_result

    worker = spawn_worker()
    # Read as it comes: the failure's log line alone is more than a pipe holds.
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.append(worker.communicate()[0]))
    reader.start()
    # The tasks, not their names: the worker may not have recorded them yet.
    big = await client.enqueue(big_result, MAX_RESULT_BYTES)
    loud = await client.enqueue(big_error, 1_000_000)
    with pytest.raises(asyncjobs.JobFailed, match="over the limit"):
        await client.wait(big, timeout=20)
    job = await client.get(big)
    assert job.attempt == 1  # no retries: it would be as big every time
    with pytest.raises(asyncjobs.JobFailed):
        await client.wait(loud, timeout=60)
    error = (await client.get(loud)).error
    assert error is not None
    assert len(error["message"]) < MAX_ERROR_CHARS + 100
    assert error["message"].endswith("[cut: 934464 more characters]")
    assert len(error["traceback"]) < MAX_ERROR_CHARS + 100
    assert await client.wait(await client.enqueue("quick", 1), timeout=20) == 1
    worker.send_signal(signal.SIGTERM)
    await anyio.to_thread.run_sync(reader.join, 15)
    assert worker.returncode == 0, output


# -- 6. a worker cancelled from outside ------------------------------------------------------


async def test_a_worker_cancelled_from_outside_stops_its_jobs_and_loses_none(
    app: asyncjobs.App, client: asyncjobs.Client
) -> None:
    """The host cancels the task group a worker runs in (no stop() first): its running jobs
    are stopped, the worker returns promptly, and the jobs run again on the next worker."""
    started: list[int] = []
    second_run = anyio.Event()

    @app.task
    async def long(n: int) -> int:
        started.append(n)
        if len(started) > 3:
            second_run.set()
            return n
        await anyio.sleep(60)
        return n

    @app.task
    def long_sync(n: int, token: asyncjobs.CancelToken) -> int:
        started.append(n)
        if len(started) > 3:
            return n
        token.wait(60)  # returns when the job is stopped
        token.raise_if_cancelled()
        return n

    ids = [await client.enqueue(long, 1), await client.enqueue(long, 2)]
    ids.append(await client.enqueue(long_sync, 3))
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            await tg.start(app.worker(concurrency=3).run)
            while len(started) < 3:
                await anyio.sleep(0.01)
            tg.cancel_scope.cancel()
    async with app.worker(concurrency=3):
        assert sorted([await client.wait(i, timeout=30) for i in ids]) == [1, 2, 3]
