"""Recurring jobs on real PostgreSQL: one job per tick across worker processes, run-time
management, code-declared schedules, the missed-tick policies, bad input, and time zones."""

from __future__ import annotations

import datetime
import json
import subprocess
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

import anyio
import asyncpg
import pytest

import asyncjobs
from asyncjobs.schedule import next_run

Spawn = Callable[..., subprocess.Popen[str]]
UTC = datetime.UTC
PARIS = "Europe/Paris"


async def _jobs(admin: asyncpg.Connection, schema: str) -> list[dict[str, Any]]:
    rows = await admin.fetch(
        f'SELECT id, task, args, kwargs, queue, priority, state, run_at FROM "{schema}".jobs '
        "ORDER BY id"
    )
    # A plain connection reads jsonb as text.
    return [
        {**row, "args": json.loads(row["args"]), "kwargs": json.loads(row["kwargs"])}
        for row in rows
    ]


async def _until_jobs(
    admin: asyncpg.Connection, schema: str, count: int, timeout: float = 20
) -> list[dict[str, Any]]:
    with anyio.fail_after(timeout):
        while len(rows := await _jobs(admin, schema)) < count:
            await anyio.sleep(0.02)
    return rows


async def _make_due(admin: asyncpg.Connection, schema: str, name: str, ago: float) -> None:
    await admin.execute(
        f'UPDATE "{schema}".schedules SET next_run_at = now() - make_interval(secs => $2) '
        "WHERE name = $1",
        name,
        ago,
    )


async def _workers_up(client: asyncjobs.Client, count: int) -> None:
    with anyio.fail_after(30):
        while len(await client.workers()) < count:
            await anyio.sleep(0.02)


# -- exactly one job per tick ----------------------------------------------------------------


async def test_two_worker_processes_enqueue_one_job_per_tick(
    client: asyncjobs.Client, admin: asyncpg.Connection, schema: str, spawn_worker: Spawn
) -> None:
    from tests.worker_app import quick

    spawn_worker()
    spawn_worker()
    await _workers_up(client, 2)
    # Every second: both workers sleep until the same instant and race for each tick.
    await client.schedules.add("every-second", quick, "* * * * * *", args=[7])
    # And 40 schedules due at the same moment: both workers race for all of them at once.
    for i in range(40):
        await client.schedules.add(f"yearly-{i}", quick, "0 0 1 1 *", args=[100 + i])
    await admin.execute(
        f"UPDATE \"{schema}\".schedules SET next_run_at = now() WHERE name LIKE 'yearly-%'"
    )
    rows = await _until_jobs(admin, schema, 40 + 5, timeout=30)
    await client.schedules.pause("every-second")
    await anyio.sleep(0.5)  # a tick being taken as we paused commits
    rows = await _jobs(admin, schema)

    yearly = sorted(row["args"][0] for row in rows if row["args"][0] >= 100)
    assert yearly == list(range(100, 140))  # each exactly once
    seconds = [row["run_at"].replace(microsecond=0) for row in rows if row["args"] == [7]]
    assert len(seconds) >= 5
    assert len(set(seconds)) == len(seconds), f"two jobs for one tick: {sorted(seconds)}"
    # Every job runs (on either worker).
    ids = [row["id"] for row in rows]
    with anyio.fail_after(30):
        for job_id in ids:
            assert await client.wait(job_id, timeout=30) in (7, *range(100, 140))
    schedule = await client.schedules.get("every-second")
    assert schedule.last_job_id == max(r["id"] for r in rows if r["args"] == [7])


# -- run-time management ---------------------------------------------------------------------


async def test_add_update_pause_resume_trigger_remove_at_run_time(
    app: asyncjobs.App, client: asyncjobs.Client, admin: asyncpg.Connection, schema: str
) -> None:
    @app.task(name="report", queue="reports", priority=3)
    async def report(kind: str, *, pages: int = 1) -> str:
        return f"{kind}:{pages}"

    async with app.worker(queues=["reports"]):
        # The worker has no schedule yet: it sleeps (up to a minute). Adding one wakes it
        # through NOTIFY, so the first per-second tick comes within seconds.
        added = await client.schedules.add(
            "reports", report, "* * * * * *", args=["pdf"], kwargs={"pages": 2}, timezone=PARIS
        )
        assert added.declared is False and added.paused is False
        assert added.queue == "reports" and added.priority == 3 and added.max_attempts == 3
        assert added.next_run_at > datetime.datetime.now(UTC) - datetime.timedelta(seconds=1)
        first = (await _until_jobs(admin, schema, 1, timeout=10))[0]
        assert (first["task"], first["queue"], first["priority"]) == ("report", "reports", 3)
        assert (first["args"], first["kwargs"]) == (["pdf"], {"pages": 2})
        assert await client.wait(first["id"], timeout=10) == "pdf:2"

        # update: once a year from now on, other arguments and priority.
        updated = await client.schedules.update(
            "reports", cron="0 0 1 1 *", kwargs={"pages": 9}, priority=5
        )
        assert updated.cron == "0 0 1 1 *" and updated.kwargs == {"pages": 9}
        assert updated.args == ["pdf"] and updated.timezone == PARIS and updated.priority == 5
        assert updated.next_run_at.astimezone(ZoneInfo(PARIS)).strftime("%m-%d %H:%M") == (
            "01-01 00:00"
        )
        await anyio.sleep(0.3)
        settled = len(await _jobs(admin, schema))
        await anyio.sleep(1.5)
        assert len(await _jobs(admin, schema)) == settled  # no more per-second ticks

        # trigger: one job now, the ticks go on as before.
        job_id = await client.schedules.trigger("reports")
        assert await client.wait(job_id, timeout=10) == "pdf:9"
        job = await client.get(job_id)
        assert job.priority == 5 and job.queue == "reports"
        assert (await client.schedules.get("reports")).next_run_at == updated.next_run_at

        # pause and resume: a paused schedule due now does not run; resume starts from now.
        assert (await client.schedules.pause("reports")).paused is True
        await _make_due(admin, schema, "reports", 5)
        before = len(await _jobs(admin, schema))
        await anyio.sleep(1.0)
        assert len(await _jobs(admin, schema)) == before
        resumed = await client.schedules.resume("reports")
        assert resumed.paused is False
        assert resumed.next_run_at > datetime.datetime.now(UTC)
        await anyio.sleep(1.0)
        assert len(await _jobs(admin, schema)) == before  # the tick missed while paused

        # a paused schedule can still be triggered
        await client.schedules.pause("reports")
        assert await client.wait(await client.schedules.trigger("reports"), timeout=10)

        listed = await client.schedules.list()
        assert [s.name for s in listed] == ["reports"]
        await client.schedules.remove("reports")
        assert await client.schedules.list() == []
        with pytest.raises(asyncjobs.ScheduleNotFound, match="no schedule named 'reports'"):
            await client.schedules.get("reports")
        for call in (
            client.schedules.remove,
            client.schedules.pause,
            client.schedules.resume,
            client.schedules.trigger,
        ):
            with pytest.raises(asyncjobs.ScheduleNotFound):
                await call("reports")
        # Jobs a removed schedule enqueued stay.
        assert await client.get(first["id"])


async def test_bad_input_is_refused_and_nothing_is_stored(
    app: asyncjobs.App, client: asyncjobs.Client
) -> None:
    @app.task(name="work")
    async def work(n: int) -> int:
        return n

    cases: list[tuple[dict[str, object], type[Exception], str]] = [
        ({"cron": "61 * * * *"}, asyncjobs.ConfigurationError, "invalid cron expression"),
        ({"cron": "* * * *"}, asyncjobs.ConfigurationError, "use 5 fields"),
        ({"cron": "0 0 30 2 *"}, asyncjobs.ConfigurationError, "invalid cron expression"),
        ({"timezone": "Mars/Olympus"}, asyncjobs.ConfigurationError, "unknown time zone"),
        ({"timezone": ""}, asyncjobs.ConfigurationError, "unknown time zone"),
        ({"task": "nope"}, asyncjobs.UnknownTaskError, "no task named 'nope'"),
        ({"args": []}, TypeError, "missing a required argument"),
        ({"args": [1, 2]}, TypeError, "too many positional arguments; the schedule was not stored"),
        ({"args": [object()]}, TypeError, "argument 'n' must be int, got object"),
        ({"args": ["1"]}, TypeError, "argument 'n' must be int, got str"),
        ({"args": "1"}, TypeError, "args must be a list"),
        ({"missed": "all"}, asyncjobs.ConfigurationError, "missed must be"),
        ({"queue": "a b"}, asyncjobs.ConfigurationError, "invalid queue name"),
        ({"max_attempts": 0}, asyncjobs.ConfigurationError, "max_attempts"),
        ({"name": ""}, asyncjobs.ConfigurationError, "invalid schedule name"),
    ]
    for change, error, message in cases:
        given: dict[str, object] = {"name": "s", "task": work, "cron": "* * * * *", "args": [1]}
        given.update(change)
        name, task, cron = given.pop("name"), given.pop("task"), given.pop("cron")
        with pytest.raises(error, match=message):
            await client.schedules.add(name, task, cron, **given)  # type: ignore[arg-type]
    assert await client.schedules.list() == []

    await client.schedules.add("s", work, "*/5 * * * *", args=[1])
    with pytest.raises(asyncjobs.ScheduleConflict, match="'s' exists"):
        await client.schedules.add("s", work, "* * * * *", args=[2])
    with pytest.raises(asyncjobs.ConfigurationError, match="invalid cron"):
        await client.schedules.update("s", cron="* * *")
    with pytest.raises(TypeError, match="too many"):
        await client.schedules.update("s", args=[1, 2])
    with pytest.raises(asyncjobs.ScheduleNotFound):
        await client.schedules.update("nope", cron="* * * * *")
    (stored,) = await client.schedules.list()
    assert (stored.cron, stored.args) == ("*/5 * * * *", [1])


async def test_a_client_without_the_task_can_change_all_but_the_arguments(
    pg_dsn: str, app: asyncjobs.App, client: asyncjobs.Client, schema: str
) -> None:
    @app.task(name="work")
    async def work(n: int) -> int:
        return n

    await client.schedules.add("s", work, "*/5 * * * *", args=[1])
    async with asyncjobs.App(pg_dsn, schema=schema).client() as other:
        changed = await other.schedules.update("s", cron="*/10 * * * *", queue="other")
        assert (changed.cron, changed.queue, changed.args) == ("*/10 * * * *", "other", [1])
        with pytest.raises(asyncjobs.UnknownTaskError, match="no task named 'work'"):
            await other.schedules.update("s", args=[2])


# -- missed ticks ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("missed", "late", "expected_jobs"),
    [
        ("once", 3 * 3600, 1),  # three hourly ticks missed: one job, then on from now
        ("skip", 3 * 3600, 0),  # missed ticks dropped
        ("skip", 5, 1),  # a tick a few seconds late is not "missed"
        ("once", 5, 1),
    ],
)
async def test_missed_ticks_policy(
    *,
    app: asyncjobs.App,
    client: asyncjobs.Client,
    admin: asyncpg.Connection,
    schema: str,
    missed: str,
    late: float,
    expected_jobs: int,
) -> None:
    @app.task(name="hourly")
    async def hourly() -> None: ...

    await client.schedules.add("hourly", hourly, "0 * * * *", missed=missed)
    # No worker was up while the ticks fell due.
    await _make_due(admin, schema, "hourly", late)
    async with app.worker():
        with anyio.fail_after(10):
            while (await client.schedules.get("hourly")).next_run_at < datetime.datetime.now(UTC):
                await anyio.sleep(0.02)
        await anyio.sleep(0.3)
    after = await client.schedules.get("hourly")
    now = datetime.datetime.now(UTC)
    assert now < after.next_run_at <= now + datetime.timedelta(hours=1)
    assert after.next_run_at.minute == 0 and after.next_run_at.second == 0
    rows = await _jobs(admin, schema)
    assert len(rows) == expected_jobs
    assert after.last_job_id == (rows[0]["id"] if rows else None)


# -- declared in code ------------------------------------------------------------------------


def _declaring_app(pg_dsn: str, schema: str, cron: str, *, extra: bool = True) -> asyncjobs.App:
    """A new App as a deploy of the same code would make it, with its schedules."""
    app = asyncjobs.App(pg_dsn, schema=schema)

    @app.periodic(cron, timezone=PARIS, args=["daily"])
    @app.periodic("0 * * * *", name="hourly-cleanup", args=["hourly"], priority=7)
    @app.task(name="cleanup")
    async def cleanup(scope: str) -> str:
        return scope

    if extra:

        @app.periodic("*/15 * * * *", name="poll", missed="skip")
        @app.task(name="poll")
        async def poll() -> None: ...

    return app


async def test_declared_schedules_are_stored_updated_and_removed_by_starting_workers(
    pg_dsn: str, schema: str
) -> None:
    app = _declaring_app(pg_dsn, schema, "0 3 * * *")
    assert set(app.schedules) == {"cleanup", "hourly-cleanup", "poll"}
    async with app.client() as client:
        assert await client.schedules.list() == []  # stored by workers, not clients
        async with app.worker():
            pass
        stored = {s.name: s for s in await client.schedules.list()}
        assert set(stored) == {"cleanup", "hourly-cleanup", "poll"}
        assert all(s.declared for s in stored.values())
        daily = stored["cleanup"]
        assert (daily.task, daily.cron, daily.timezone, daily.args) == (
            "cleanup",
            "0 3 * * *",
            PARIS,
            ["daily"],
        )
        assert daily.next_run_at.astimezone(ZoneInfo(PARIS)).hour == 3
        assert stored["hourly-cleanup"].priority == 7 and stored["poll"].missed == "skip"

        # Run time: declared schedules can be paused and triggered, not changed or removed.
        await client.schedules.pause("poll")
        with pytest.raises(asyncjobs.ScheduleConflict, match="declared in code"):
            await client.schedules.update("cleanup", cron="* * * * *")
        with pytest.raises(asyncjobs.ScheduleConflict, match="declared in code"):
            await client.schedules.remove("cleanup")
        await client.schedules.add("by-hand", "poll", "0 0 * * *")

        # The same code starting again changes nothing (no write, the same next run).
        async with app.worker():
            pass
        again = {s.name: s for s in await client.schedules.list()}
        assert again["cleanup"] == daily and again["poll"].paused

        # A deploy changes one schedule's cron and drops another: the next worker start
        # applies it. The paused state stays; the run-time schedule is left alone.
        deployed = _declaring_app(pg_dsn, schema, "30 4 * * *", extra=False)
        async with deployed.worker():
            pass
        after = {s.name: s for s in await client.schedules.list()}
        assert set(after) == {"cleanup", "hourly-cleanup", "by-hand"}
        assert after["cleanup"].cron == "30 4 * * *"
        assert after["cleanup"].next_run_at.astimezone(ZoneInfo(PARIS)).strftime("%H:%M") == (
            "04:30"
        )
        assert after["hourly-cleanup"] == again["hourly-cleanup"]
        assert after["by-hand"].declared is False


def test_periodic_declaration_errors(pg_dsn: str) -> None:
    app = asyncjobs.App(pg_dsn)

    async def plain() -> None: ...

    with pytest.raises(asyncjobs.ConfigurationError, match=r"above @app\.task"):
        app.periodic("* * * * *")(plain)  # type: ignore[arg-type]

    task = app.task(name="t")(plain)
    app.periodic("* * * * *")(task)
    with pytest.raises(asyncjobs.ConfigurationError, match="two schedules are named 't'"):
        app.periodic("*/5 * * * *")(task)
    with pytest.raises(asyncjobs.ConfigurationError, match="unknown time zone"):
        app.periodic("* * * * *", name="x", timezone="Nowhere/Land")(task)
    with pytest.raises(TypeError, match="too many positional"):
        app.periodic("* * * * *", name="y", args=[1])(task)
    assert list(app.schedules) == ["t"]


# -- time zones and daylight saving ----------------------------------------------------------


def _local(cron: str, after: datetime.datetime, count: int) -> list[str]:
    found = []
    for _ in range(count):
        after = next_run(cron, PARIS, after)
        found.append(after.astimezone(ZoneInfo(PARIS)).strftime("%m-%d %H:%M%z"))
    return found


def test_a_skipped_local_hour_runs_a_fixed_time_job_right_after_the_gap() -> None:
    # 2026-03-29 in Paris: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist that day.
    start = datetime.datetime(2026, 3, 28, 12, tzinfo=UTC)
    assert _local("30 2 * * *", start, 3) == [
        "03-29 03:00+0200",
        "03-30 02:30+0200",
        "03-31 02:30+0200",
    ]
    # An hourly job has no 02:30 that night, and runs every real hour.
    assert _local("30 * * * *", datetime.datetime(2026, 3, 28, 23, tzinfo=UTC), 3) == [
        "03-29 00:30+0100",
        "03-29 01:30+0100",
        "03-29 03:30+0200",
    ]


def test_a_repeated_local_hour_runs_a_fixed_time_job_once() -> None:
    # 2026-10-25 in Paris: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
    start = datetime.datetime(2026, 10, 24, 12, tzinfo=UTC)
    assert _local("30 2 * * *", start, 2) == ["10-25 02:30+0200", "10-26 02:30+0100"]
    # An hourly job runs in both passes of the repeated hour: once per real hour.
    assert _local("30 * * * *", datetime.datetime(2026, 10, 24, 23, tzinfo=UTC), 3) == [
        "10-25 01:30+0200",
        "10-25 02:30+0200",
        "10-25 02:30+0100",
    ]


async def test_a_stored_schedule_that_cannot_run_is_paused_and_the_others_tick(
    app: asyncjobs.App, client: asyncjobs.Client, admin: asyncpg.Connection, schema: str
) -> None:
    @app.task(name="fine")
    async def fine() -> str:
        return "fine"

    await client.schedules.add("broken", fine, "0 0 1 1 *")
    await client.schedules.add("healthy", fine, "0 0 1 1 *")
    # Written by hand, or a time zone this machine's tz database lacks.
    await admin.execute(
        f"UPDATE \"{schema}\".schedules SET timezone = 'Nowhere/Land', next_run_at = now() "
        "WHERE name = 'broken'"
    )
    await _make_due(admin, schema, "healthy", 0)
    async with app.worker():
        (job,) = await _until_jobs(admin, schema, 1)
        assert await client.wait(job["id"], timeout=10) == "fine"
        with anyio.fail_after(10):
            while not (await client.schedules.get("broken")).paused:
                await anyio.sleep(0.02)
    assert [row["id"] for row in await _jobs(admin, schema)] == [job["id"]]
    assert (await client.schedules.get("healthy")).last_job_id == job["id"]
