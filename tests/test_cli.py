"""The `asyncjobs` command, run as real processes against real PostgreSQL: every command,
its messages and exit codes, and a worker process stopped by the CLI and by signals."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import asyncpg
import click
import orjson
import pytest

from asyncjobs.cli.main import cli as root_command
from asyncjobs.db.migrations import available
from tests.helpers import run_cli

ROOT = Path(__file__).resolve().parent.parent
UNREACHABLE = "postgresql://postgres@127.0.0.1:1/x"
_APP = "tests.worker_app:app"
_ADD_SCHEDULE = ["schedules", "add", "s", "quick", "* * * * *", "[1]", "--app", _APP]

Spawn = Callable[..., subprocess.Popen[str]]


async def run_many(
    env: dict[str, str], commands: list[list[str]]
) -> list[subprocess.CompletedProcess[str]]:
    """Several CLI processes at once (they are independent): saves seconds of start-up."""
    results: list[subprocess.CompletedProcess[str] | None] = [None] * len(commands)

    async def one(i: int) -> None:
        results[i] = await run_cli(env, *commands[i])

    async with anyio.create_task_group() as tg:
        for i in range(len(commands)):
            tg.start_soon(one, i)
    return [r for r in results if r is not None]


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    """Assert `done` failed with exit 1 and a single `error: ...` line; return that line."""
    assert done.returncode == 1, done
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


async def job_row(admin: asyncpg.Connection, schema: str, job_id: int) -> asyncpg.Record | None:
    return await admin.fetchrow(
        f"SELECT task, queue, priority, args::text, kwargs::text, state, attempt, max_attempts,"
        f' run_at > now() AS later FROM "{schema}".jobs WHERE id = $1',
        job_id,
    )


async def until_state(
    admin: asyncpg.Connection,
    schema: str,
    job_id: int,
    state: str,
    proc: subprocess.Popen[str] | None = None,
    *,
    timeout: float = 20,
) -> None:
    """Wait for the job to reach `state`; fail with the worker's output if it died first."""
    with anyio.fail_after(timeout):
        while True:
            row = await job_row(admin, schema, job_id)
            if row is not None and row["state"] == state:
                return
            if proc is not None and proc.poll() is not None:
                output = proc.stdout.read() if proc.stdout else ""
                pytest.fail(f"worker exited {proc.returncode} first:\n{output}")
            await anyio.sleep(0.02)


async def stopped(proc: subprocess.Popen[str], timeout: float) -> tuple[int, str]:
    """Wait for the worker process to exit; its exit code and output."""
    with anyio.fail_after(timeout):
        while proc.poll() is None:
            await anyio.sleep(0.02)
    return proc.returncode, proc.stdout.read() if proc.stdout else ""


ANYWAY = "--allow-unknown-task"


async def enqueue(env: dict[str, str], *args: str) -> int:
    """`asyncjobs enqueue ARGS` of a task of tests.worker_app, whose worker may not have run
    yet (its names are checked in test_task_names.py)."""
    done = await run_cli(env, "enqueue", *args, ANYWAY)
    assert done.returncode == 0, done
    return int(done.stdout.strip())


def _command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield prefix
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _command_paths(command, (*prefix, name))
        else:
            yield (*prefix, name)


# -- help, usage errors, connection errors -------------------------------------------------


async def test_help_for_every_command_and_group(env: dict[str, str]) -> None:
    paths = list(_command_paths(root_command))
    assert {" ".join(p) for p in paths} >= {
        "",
        "worker",
        "migrate",
        "enqueue",
        "jobs",
        "jobs show",
        "jobs cancel",
        "jobs requeue",
        "jobs delete",
        "jobs list",
        "workers",
        "workers list",
        "workers stop",
        "schedules",
        "schedules list",
        "schedules add",
        "schedules update",
        "schedules pause",
        "schedules resume",
        "schedules trigger",
        "schedules remove",
    }
    commands = [[*p, "--help"] for p in paths] + [["-h"], ["jobs", "show", "-h"]]
    # Help needs no database: it must work with an unreachable one.
    for command, done in zip(
        commands, await run_many({**env, "ASYNCJOBS_DSN": UNREACHABLE}, commands), strict=True
    ):
        assert done.returncode == 0, (command, done)
        assert done.stdout.startswith("Usage: "), (command, done.stdout)
        assert " ".join(command[:-1]) in done.stdout.splitlines()[0]
        assert done.stderr == ""


async def test_invalid_options_are_usage_errors(env: dict[str, str]) -> None:
    cases = [
        (["enqueue", "quick", "[1]", "--queue", "a b"], "invalid queue name"),
        (["enqueue", "quick", "not json"], "not valid JSON"),
        (["enqueue", "quick", '{"x": 1}'], "must be a JSON array"),
        (["enqueue", "quick", "[1]", "--priority", str(2**40)], "priority"),
        (["enqueue", "", "[1]"], "invalid task name '': it is empty"),
        (["enqueue", "nope", "[]", "--app", "examples.tasks:app"], "has no task named 'nope' ("),
        (
            ["enqueue", "examples.tasks.ad", "[1]", "--app", "examples.tasks:app"],
            "no task named 'examples.tasks.ad'; did you mean 'examples.tasks.add'?",
        ),
        (
            ["schedules", "add", "s", "quik", "* * * * *", "[1]", "--app", _APP],
            "no task named 'quik'; did you mean 'quick'?",
        ),
        (
            ["enqueue", "examples.tasks.add", "[1]", "--app", "examples.tasks:app"],
            "missing a required argument",
        ),
        (["worker", "no_colon_here"], "is not MODULE:APP"),
        (["worker", "no_such_module_xyz:app"], "cannot import 'no_such_module_xyz'"),
        (["worker", "tests.worker_app:nope"], "has no attribute 'nope'"),
        (["worker", "tests.worker_app:quick"], "not an asyncjobs.App"),
        (["worker", "tests.worker_app:app", "--queues", "a b"], "invalid queue name"),
        (["worker", "tests.worker_app:app", "--schema", "Bad-Name"], "invalid schema name"),
        (["jobs", "list", "--state", "bogus"], "'bogus' is not one of"),
        (["migrate", "--schema", "x'; DROP TABLE jobs"], "invalid schema name"),
        (["no-such-command"], "No such command"),
        (["schedules", "add", "s", "quick", "61 * * * *", "[1]", "--app", _APP], "invalid cron"),
        (["schedules", "add", "s", "quick", "* * * *", "[1]", "--app", _APP], "use 5 fields"),
        (
            [*_ADD_SCHEDULE, "--timezone", "Mars/Olympus"],
            "unknown time zone 'Mars/Olympus'",
        ),
        (["schedules", "add", "s", "nope", "* * * * *", "--app", _APP], "no task named 'nope'"),
        (["schedules", "add", "s", "quick", "* * * * *", "--app", _APP], "missing a required"),
        (["schedules", "add", "s", "quick", "* * * * *", "[1", "--app", _APP], "not valid JSON"),
        (["schedules", "add", "s", "quick", "* * * * *", "[1]"], "Missing option '--app'"),
        (
            [*_ADD_SCHEDULE, "--missed", "all"],
            "'all' is not one of",
        ),
        (["schedules", "update", "s", "--args", "{}"], "must be a JSON array"),
    ]
    # With an unreachable server: a usage error is found before connecting (which would be
    # exit 1, or for a worker, retries).
    results = await run_many({**env, "ASYNCJOBS_DSN": UNREACHABLE}, [c for c, _ in cases])
    for (command, message), done in zip(cases, results, strict=True):
        assert done.returncode == 2, (command, done)
        assert "Usage: " in done.stderr and message in done.stderr, (command, done.stderr)
        assert "Traceback" not in done.stderr
        assert done.stdout == ""


async def test_an_unreachable_server_is_exit_1_with_a_clear_message(env: dict[str, str]) -> None:
    commands = [
        ["migrate", "--dsn", UNREACHABLE],
        ["jobs", "list", "--dsn", UNREACHABLE],
        ["enqueue", "quick", "[5]", "--dsn", UNREACHABLE],
        ["workers", "stop", "--dsn", "postgresql://bob:hunter2@127.0.0.1:1/x"],
        ["migrate", "--dsn", "not a dsn"],
        ["jobs", "list", "--dsn", "postgresql://postgres@127.0.0.1:notaport/x"],
    ]
    results = await run_many(env, commands)
    for done in results[:4]:
        line = one_line_error(done)
        assert "cannot connect to PostgreSQL at postgresql://" in line
        assert "127.0.0.1:1/x" in line and "is PostgreSQL running" in line
        assert done.stdout == ""
    assert "hunter2" not in results[3].stderr
    for done in results[4:]:
        assert "invalid PostgreSQL DSN" in one_line_error(done)


async def test_a_worker_with_an_invalid_dsn_exits_1_at_once(spawn_worker: Spawn) -> None:
    for proc in (
        spawn_worker("--dsn", "not a dsn"),
        spawn_worker(env={"ASYNCJOBS_DSN": "postgresql://postgres@127.0.0.1:notaport/x"}),
    ):
        code, output = await stopped(proc, timeout=20)
        assert code == 1, output
        assert "error: invalid PostgreSQL DSN" in output
        assert "Traceback" not in output


async def test_a_worker_refused_by_the_server_exits_1_in_one_line(
    spawn_worker: Spawn, pg_dsn: str
) -> None:
    base = pg_dsn.split("?", maxsplit=1)[0].rsplit("/", 1)[0]
    query = "?" + pg_dsn.split("?", 1)[1] if "?" in pg_dsn else ""
    proc = spawn_worker(env={"ASYNCJOBS_DSN": f"{base}/no_such_db_here{query}"})
    code, output = await stopped(proc, timeout=20)
    assert code == 1, output
    (line,) = output.splitlines()
    assert line.startswith("error: cannot connect to PostgreSQL at "), line
    assert "no_such_db_here" in line and "create the database" in line


async def test_a_worker_retries_an_unreachable_server_until_sigterm(spawn_worker: Spawn) -> None:
    proc = spawn_worker(env={"ASYNCJOBS_DSN": UNREACHABLE})
    assert proc.stdout is not None
    failures = 0
    with anyio.fail_after(20):
        while failures < 2:  # the first try, and a retry after a backoff
            line = await anyio.to_thread.run_sync(proc.stdout.readline, abandon_on_cancel=True)
            assert line, "the worker exited instead of retrying"
            assert "Traceback" not in line
            failures += "cannot connect to PostgreSQL at postgresql://" in line
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    code, output = await stopped(proc, timeout=10)
    assert code == 0, output
    assert "Traceback" not in output


# -- migrate, enqueue, jobs ----------------------------------------------------------------


async def test_migrate_applies_then_says_up_to_date(
    env: dict[str, str], admin: asyncpg.Connection, schema: str
) -> None:
    versions = [m.version for m in available()]
    first = await run_cli(env, "migrate")
    assert first.returncode == 0, first
    applied = "migration" if len(versions) == 1 else "migrations"
    listed = ", ".join(map(str, versions))
    assert first.stdout == f"schema {schema!r}: applied {applied} {listed}\n"
    assert await admin.fetchval(f'SELECT max(version) FROM "{schema}".migrations') == versions[-1]
    again = await run_cli(env, "migrate")
    assert again.returncode == 0, again
    assert again.stdout == f"schema {schema!r} is up to date\n"


async def test_migrate_refuses_a_database_newer_than_the_code(
    env: dict[str, str], admin: asyncpg.Connection, schema: str
) -> None:
    assert (await run_cli(env, "migrate")).returncode == 0
    await admin.execute(f"INSERT INTO \"{schema}\".migrations VALUES (9999, 'from_the_future')")
    line = one_line_error(await run_cli(env, "migrate"))
    assert "newer than this asyncjobs" in line and "upgrade asyncjobs" in line


async def test_enqueue_prints_the_id_of_a_stored_job(
    env: dict[str, str], admin: asyncpg.Connection, schema: str
) -> None:
    plain = await enqueue(env, "quick", "[5]")
    row = await job_row(admin, schema, plain)
    assert row is not None
    assert (row["task"], row["queue"], row["state"], row["attempt"]) == (
        "quick",
        "default",
        "queued",
        0,
    )
    assert json.loads(row["args"]) == [5] and json.loads(row["kwargs"]) == {}

    detailed = await enqueue(
        env,
        "reports.build",
        '[1, "two"]',
        "--kwargs",
        '{"fmt": "pdf"}',
        "--queue",
        "reports",
        "--priority",
        "7",
        "--delay",
        "3600",
        "--max-attempts",
        "5",
    )
    assert detailed > plain
    row = await job_row(admin, schema, detailed)
    assert row is not None
    assert (row["task"], row["queue"], row["priority"], row["max_attempts"]) == (
        "reports.build",
        "reports",
        7,
        5,
    )
    assert row["state"] == "scheduled" and row["later"]
    assert json.loads(row["args"]) == [1, "two"] and json.loads(row["kwargs"]) == {"fmt": "pdf"}

    # With --app, the task's own options apply (queue emails, 5 attempts), unless overridden.
    task = "examples.tasks.send_welcome_email"
    kwargs = '{"name": "Ada"}'
    app = "examples.tasks:app"
    own, overridden = await run_many(
        env,
        [
            ["enqueue", task, '["a@example.com"]', "--kwargs", kwargs, "--app", app],
            [
                *("enqueue", task, '["b@example.com"]', "--kwargs", kwargs, "--app", app),
                *("--priority", "3", "--max-attempts", "1"),
            ],
        ],
    )
    row = await job_row(admin, schema, int(own.stdout))
    assert row is not None
    assert (row["task"], row["queue"], row["priority"], row["max_attempts"]) == (
        task,
        "emails",
        0,
        5,
    )
    row = await job_row(admin, schema, int(overridden.stdout))
    assert row is not None
    assert (row["queue"], row["priority"], row["max_attempts"]) == ("emails", 3, 1)


async def test_jobs_show_list_cancel_requeue_delete(
    env: dict[str, str], admin: asyncpg.Connection, schema: str
) -> None:
    job_id = await enqueue(env, "quick", "[5]")
    other = await enqueue(env, "sleep", "[1]", "--queue", "slow")

    show, listed, as_json, none_cancelled = await run_many(
        env,
        [
            ["jobs", "show", str(job_id)],
            ["jobs", "list"],
            ["jobs", "show", str(job_id), "--json"],
            ["jobs", "list", "--state", "cancelled"],
        ],
    )
    assert show.returncode == 0, show
    assert show.stdout.startswith(f"job {job_id}: quick on default (priority 0)\n")
    assert "state     queued, attempt 0 of 3" in show.stdout
    assert "args      [5] {}" in show.stdout
    assert listed.returncode == 0, listed
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["ID", "STATE", "TRIES", "QUEUE", "TASK"]
    assert [line.split() for line in lines[1:]] == [
        [str(other), "queued", "0/3", "slow", "sleep"],
        [str(job_id), "queued", "0/3", "default", "quick"],
    ]
    shown = json.loads(as_json.stdout)
    assert (shown["id"], shown["state"], shown["args"]) == (job_id, "queued", [5])
    assert none_cancelled.stdout == "no cancelled jobs\n"

    cancel = await run_cli(env, "jobs", "cancel", str(job_id))
    assert cancel.stdout == f"job {job_id} cancelled\n", cancel
    assert (await job_row(admin, schema, job_id))["state"] == "cancelled"  # type: ignore[index]
    again, only_cancelled = await run_many(
        env,
        [["jobs", "cancel", str(job_id)], ["jobs", "list", "--state", "cancelled", "--json"]],
    )
    assert again.returncode == 0, again
    assert again.stdout == f"job {job_id} had already finished (cancelled): nothing to cancel\n"
    assert [json.loads(line)["id"] for line in only_cancelled.stdout.splitlines()] == [job_id]

    requeue = await run_cli(env, "jobs", "requeue", str(job_id))
    assert requeue.stdout == f"job {job_id} requeued\n", requeue
    row = await job_row(admin, schema, job_id)
    assert row is not None and (row["state"], row["attempt"]) == ("queued", 0)

    delete = await run_cli(env, "jobs", "delete", str(job_id))
    assert delete.stdout == f"job {job_id} deleted\n", delete
    assert await job_row(admin, schema, job_id) is None
    gone = one_line_error(await run_cli(env, "jobs", "show", str(job_id)))
    assert gone == f"error: no job {job_id}: it never existed or was deleted"

    limited = await run_cli(env, "jobs", "list", "--limit", "1")
    assert [line.split()[0] for line in limited.stdout.splitlines()[1:]] == [str(other)]


async def test_a_missing_job_is_exit_1_and_one_line(env: dict[str, str]) -> None:
    actions = ["show", "cancel", "requeue", "delete"]
    results = await run_many(env, [["jobs", action, "424242"] for action in actions])
    for done in results:
        assert one_line_error(done) == "error: no job 424242: it never existed or was deleted"
        assert done.stdout == ""


# -- a worker process ----------------------------------------------------------------------


async def test_worker_runs_a_job_then_workers_list_and_stop(
    env: dict[str, str], admin: asyncpg.Connection, schema: str, spawn_worker: Spawn
) -> None:
    proc = spawn_worker("--concurrency", "3")
    job_id = await enqueue(env, "quick", "[5]")
    await until_state(admin, schema, job_id, "succeeded", proc)

    show, workers, as_json = await run_many(
        env,
        [["jobs", "show", str(job_id)], ["workers", "list"], ["workers", "list", "--json"]],
    )
    assert "state     succeeded, attempt 1 of 3" in show.stdout, show
    assert "result    5" in show.stdout
    assert workers.returncode == 0, workers
    (line,) = workers.stdout.splitlines()
    assert f":{proc.pid}  running  " in line and "/3 jobs" in line and "queues default" in line
    (row,) = [orjson.loads(line) for line in as_json.stdout.splitlines()]
    assert (row["pid"], row["concurrency"], row["queues"]) == (proc.pid, 3, ["default"])

    stop = await run_cli(env, "workers", "stop")
    assert stop.stdout == "asked 1 worker to stop\n", stop
    code, output = await stopped(proc, timeout=10)
    assert code == 0, output
    assert "Traceback" not in output
    assert (await run_cli(env, "workers", "list")).stdout == "no workers\n"


async def test_a_job_blocking_the_event_loop_is_named_with_how_long_it_held_it(
    env: dict[str, str], admin: asyncpg.Connection, schema: str, spawn_worker: Spawn
) -> None:
    proc = spawn_worker()
    job_id = await enqueue(env, "block_loop", "[2]")
    await until_state(admin, schema, job_id, "succeeded", proc)
    assert proc.stdout is not None
    with anyio.fail_after(10):
        while True:
            line = await anyio.to_thread.run_sync(proc.stdout.readline, abandon_on_cancel=True)
            assert line, "the worker exited without reporting the blocked loop"
            if "blocked the event loop" in line:
                break
    assert " WARNING asyncjobs.watchdog: " in line, line
    assert f"job {job_id} (block_loop, attempt 1) blocked the event loop for " in line, line
    assert "worker_app.py:" in line and " in block_loop)" in line, line
    match = re.search(r"blocked the event loop for (\d+\.\d)s \(at ", line)
    assert match is not None and 1.5 <= float(match[1]) < 10, line
    assert "anyio.to_thread.run_sync" in line, line


async def test_sigterm_requeues_running_jobs_and_exits_at_once(
    env: dict[str, str], admin: asyncpg.Connection, schema: str, spawn_worker: Spawn
) -> None:
    proc = spawn_worker()
    async_job = await enqueue(env, "sleep", "[60]")
    sync_job = await enqueue(env, "sync_sleep", "[60]")
    for job_id in (async_job, sync_job):
        await until_state(admin, schema, job_id, "processing", proc)

    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code, output = await stopped(proc, timeout=10)
    assert code == 0, output
    assert time.monotonic() - started < 5, output
    assert "Traceback" not in output
    for job_id in (async_job, sync_job):
        row = await job_row(admin, schema, job_id)
        assert row is not None and (row["state"], row["attempt"]) == ("queued", 0), output
    show = await run_cli(env, "jobs", "show", str(async_job))
    assert "state     queued, attempt 0 of 3" in show.stdout


async def test_second_sigint_skips_the_grace(
    env: dict[str, str], admin: asyncpg.Connection, schema: str, spawn_worker: Spawn
) -> None:
    proc = spawn_worker("--grace", "60")
    job_id = await enqueue(env, "sleep", "[60]")
    await until_state(admin, schema, job_id, "processing", proc)

    proc.send_signal(signal.SIGINT)
    # Within its grace the job runs on, and the stopping worker takes no new job.
    later = await enqueue(env, "quick", "[1]")
    await anyio.sleep(0.3)
    assert proc.poll() is None
    row = await job_row(admin, schema, job_id)
    assert row is not None and row["state"] == "processing"

    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    code, output = await stopped(proc, timeout=10)
    assert code == 0, output
    assert time.monotonic() - started < 5, output
    assert "Traceback" not in output and "KeyboardInterrupt" not in output
    for queued in (job_id, later):
        row = await job_row(admin, schema, queued)
        assert row is not None and (row["state"], row["attempt"]) == ("queued", 0), output


async def test_schedules_commands(env: dict[str, str], admin: asyncpg.Connection) -> None:
    add = await run_cli(
        env,
        *["schedules", "add", "every-5", "quick", "*/5 * * * *", "[3]", "--app", _APP],
        *["--timezone", "Europe/Paris", "--priority", "4", "--missed", "skip"],
    )
    assert add.returncode == 0, add
    assert add.stdout.startswith("schedule 'every-5' (*/5 * * * * Europe/Paris): next run ")
    listed, as_json, trigger, duplicate, declared = await run_many(
        env,
        [
            ["schedules", "list"],
            ["schedules", "list", "--json"],
            ["schedules", "trigger", "every-5"],
            ["schedules", "add", "every-5", "quick", "* * * * *", "[1]", "--app", _APP],
            ["schedules", "remove", "nope"],
        ],
    )
    header, row = listed.stdout.splitlines()
    assert header.split() == ["NAME", "CRON", "TIMEZONE", "NEXT", "RUN", "SOURCE", "TASK"]
    assert row.startswith("every-5 ") and row.endswith("  runtime  quick"), row
    shown = json.loads(as_json.stdout)
    assert (shown["name"], shown["args"], shown["priority"], shown["missed"]) == (
        "every-5",
        [3],
        4,
        "skip",
    )
    assert not shown["paused"] and not shown["declared"]
    job = await job_row(admin, env["ASYNCJOBS_SCHEMA"], int(trigger.stdout))
    assert job is not None and (job["task"], job["args"], job["priority"]) == ("quick", "[3]", 4)
    assert "exists" in one_line_error(duplicate)
    assert "no schedule named 'nope'" in one_line_error(declared)

    pause = await run_cli(env, "schedules", "pause", "every-5")
    assert pause.stdout == "schedule 'every-5' (*/5 * * * * Europe/Paris): paused\n", pause
    paused_list = await run_cli(env, "schedules", "list")
    assert "  paused  " in paused_list.stdout
    resume = await run_cli(env, "schedules", "resume", "every-5")
    assert "next run" in resume.stdout, resume
    update = await run_cli(
        env, "schedules", "update", "every-5", "--cron", "0 3 * * *", "--args", "[9]", "--app", _APP
    )
    assert update.returncode == 0 and update.stdout.endswith(": updated\n"), update
    assert "next run " in update.stdout and "T03:00:00+0" in update.stdout, update.stdout
    bad_update = await run_cli(env, "schedules", "update", "every-5", "--args", "[1, 2]")
    assert "no task named 'quick'" in one_line_error(bad_update)
    remove = await run_cli(env, "schedules", "remove", "every-5")
    assert remove.stdout == "schedule 'every-5' removed\n", remove
    assert (await run_cli(env, "schedules", "list")).stdout == "no schedules\n"
    assert (await run_cli(env, "schedules", "list", "--json")).stdout == ""


async def test_enqueue_with_unique_key_and_after_and_show_them(
    env: dict[str, str], admin: asyncpg.Connection, schema: str
) -> None:
    parent = await enqueue(env, "quick", "[1]", "--delay", "3600")
    keyed = await enqueue(env, "quick", "[2]", "--unique-key", "user:42")
    again, refused, child, unknown = await run_many(
        env,
        [
            ["enqueue", "quick", "[3]", "--unique-key", "user:42", ANYWAY],
            [
                "enqueue",
                "quick",
                "[4]",
                "--unique-key",
                "user:42",
                "--on-duplicate",
                "raise",
                ANYWAY,
            ],
            [
                *("enqueue", "quick", "[5]", "--after", str(parent), "--after", str(keyed)),
                *("--on-parent-failure", "run", ANYWAY),
            ],
            ["enqueue", "quick", "[6]", "--after", "999999", ANYWAY],
        ],
    )
    assert int(again.stdout) == keyed
    line = one_line_error(refused)
    assert f"unique key 'user:42' (job {keyed}, queued)" in line
    assert "cannot enqueue after job 999999" in one_line_error(unknown)
    child_id = int(child.stdout)
    row = await job_row(admin, schema, child_id)
    assert row is not None and row["state"] == "awaiting"

    shown_child, shown_keyed = await run_many(
        env, [["jobs", "show", str(child_id)], ["jobs", "show", str(keyed)]]
    )
    assert "state     awaiting, attempt 0 of 3" in shown_child.stdout
    assert f"after     {min(parent, keyed)}, {max(parent, keyed)}" in shown_child.stdout
    assert "unique    user:42" in shown_keyed.stdout
    listed = await run_cli(env, "jobs", "list", "--state", "awaiting")
    assert [line.split()[0] for line in listed.stdout.splitlines()[1:]] == [str(child_id)]

    cancelling_child = await enqueue(env, "quick", "[7]", "--after", str(parent))
    assert (await run_cli(env, "jobs", "cancel", str(parent))).returncode == 0
    shown = await run_cli(env, "jobs", "show", str(cancelling_child))
    assert "state     cancelled" in shown.stdout
    assert f"reason    ParentNotSucceeded: parent job {parent} was cancelled" in shown.stdout


async def test_the_demo_runs_every_step(env: dict[str, str]) -> None:
    """The README's first command: two real workers, a cancel, a SIGKILL."""
    demo = await run_cli(env, "demo")
    assert demo.returncode == 0, demo
    lines = demo.stdout.splitlines()
    assert [line.split(" ", 1)[0] for line in lines[1:]] == ["1.", "2.", "3.", "4.", "5."], lines
    assert "its code was interrupted" in lines[3]
    assert "the job's code ran again on the other worker" in lines[4]
    assert "it slept 2s" in lines[4]
