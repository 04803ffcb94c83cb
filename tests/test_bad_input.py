"""Hostile values at every public entry point, against real PostgreSQL: each is refused with
asyncjobs' own error (a message saying what was wrong), never a raw driver or Python error,
and nothing already stored changes. Rows that plain SQL made odd never break a listing."""

from __future__ import annotations

import dataclasses
import datetime
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import asyncpg
import pytest
from click.testing import CliRunner, Result

import asyncjobs
from asyncjobs.cli.main import cli as root_command

UTC = datetime.UTC
NAN = math.nan
INF = math.inf
HUGE = 2**70
NUL = "a\x00b"
SURROGATE = "a\udc80b"
NAIVE = datetime.datetime(2030, 1, 1)
MIB64 = 64 * 2**20
LATE = datetime.datetime(9999, 12, 31, 23, tzinfo=datetime.timezone(-datetime.timedelta(hours=5)))


def _bad_app(pg_dsn: str, schema: str) -> tuple[asyncjobs.App, Any]:
    app = asyncjobs.App(pg_dsn, schema=schema)

    # Unannotated: these cases are about what JSON can hold (a mismatch with an annotation
    # is refused before that, see test_typed_arguments.py).
    @app.task(name="add")
    def add(a, b=0):  # type: ignore[no-untyped-def]
        return a + b

    return app, add


def _typed(client: asyncjobs.Client) -> Any:
    @client.app.task(name="typed_add")
    def typed_add(a: int, b: int = 0) -> int:
        return a + b

    return typed_add


@pytest.fixture
async def setup(pg_dsn: str, schema: str) -> AsyncIterator[tuple[asyncjobs.Client, Any, int]]:
    app, add = _bad_app(pg_dsn, schema)
    async with app.client() as client:
        job_id = await client.enqueue(add.options(unique_key="k"), 1, b=2)
        await client.schedules.add("kept", add, "* * * * *", args=(5,))
        yield client, add, job_id


async def _snapshot(client: asyncjobs.Client) -> list[Any]:
    jobs = await client.pool.fetch(f'SELECT * FROM "{client.app.schema}".jobs ORDER BY id')
    queue = await client.pool.fetch(f'SELECT * FROM "{client.app.schema}".queue ORDER BY id')
    schedules = await client.pool.fetch(
        f'SELECT * FROM "{client.app.schema}".schedules ORDER BY name'
    )
    return [list(map(dict, jobs)), list(map(dict, queue)), list(map(dict, schedules))]


def _assert_own_error(exc: BaseException, *words: str) -> None:
    assert isinstance(exc, asyncjobs.AsyncJobsError), f"{type(exc).__module__}.{exc!r}"
    for word in words:
        assert word in str(exc), (word, str(exc))


# (label, what to call on (client, add task, stored job id), words the message must hold)
Case = tuple[str, Callable[[asyncjobs.Client, Any, int], Awaitable[Any] | Any], tuple[str, ...]]

_ID_VALUES = ["abc", HUGE, -1, 0, 1.5, True, None, 2**63]
CLIENT_CASES: list[Case] = [
    *[
        (f"{method}({value!r})", lambda c, t, j, m=method, v=value: getattr(c, m)(v), ("job id",))
        for method in ("get", "cancel", "requeue", "delete", "wait")
        for value in _ID_VALUES
    ],
    ("get(1.5) is not job 1", lambda c, t, j: c.get(1.5), ("1.5",)),
    ("list_jobs(limit=-1)", lambda c, t, j: c.list_jobs(limit=-1), ("limit",)),
    ("list_jobs(limit=True)", lambda c, t, j: c.list_jobs(limit=True), ("limit",)),
    ("list_jobs(limit=2**70)", lambda c, t, j: c.list_jobs(limit=HUGE), ("limit",)),
    ("list_jobs(limit='5')", lambda c, t, j: c.list_jobs(limit="5"), ("limit",)),
    ("list_jobs(state=bogus)", lambda c, t, j: c.list_jobs("bogus"), ("unknown job state",)),
    ("wait(timeout=nan)", lambda c, t, j: c.wait(j, timeout=NAN), ("timeout",)),
    ("wait(timeout=-1)", lambda c, t, j: c.wait(j, timeout=-1), ("timeout",)),
    ("stop_workers(nan)", lambda c, t, j: c.stop_workers(NAN), ("grace",)),
    ("stop_workers(-1)", lambda c, t, j: c.stop_workers(-1), ("grace",)),
    ("stop_workers('1')", lambda c, t, j: c.stop_workers("1"), ("grace",)),
    # task names
    ("enqueue('')", lambda c, t, j: c.enqueue(""), ("task name", "empty")),
    ("enqueue('  ')", lambda c, t, j: c.enqueue("  "), ("task name", "empty")),
    ("enqueue(NUL)", lambda c, t, j: c.enqueue(NUL), ("task name", "NUL")),
    ("enqueue(surrogate)", lambda c, t, j: c.enqueue(SURROGATE), ("task name", "surrogate")),
    ("enqueue(huge name)", lambda c, t, j: c.enqueue("x" * 100_000), ("task name", "at most")),
    ("enqueue(5)", lambda c, t, j: c.enqueue(5), ("task or a task name",)),
    # arguments
    ("add(nan)", lambda c, t, j: c.enqueue(t, NAN), ("NaN",)),
    ("add(inf)", lambda c, t, j: c.enqueue(t, INF), ("NaN or infinite",)),
    ("add(-inf) by name", lambda c, t, j: c.enqueue("add", -INF), ("infinite",)),
    ("unknown task, nan", lambda c, t, j: c.enqueue("elsewhere", [1.0, NAN]), ("NaN",)),
    ("add(b={'x': nan})", lambda c, t, j: c.enqueue(t, 1, b={"x": [NAN]}), ("'b'", "NaN")),
    ("add(2**70)", lambda c, t, j: c.enqueue(t, HUGE), ("64-bit",)),
    ("add(NUL)", lambda c, t, j: c.enqueue(t, NUL), ("NUL",)),
    ("add(surrogate)", lambda c, t, j: c.enqueue(t, SURROGATE), ("positional argument 0",)),
    ("add(object())", lambda c, t, j: c.enqueue(t, object()), ("cannot be stored as JSON",)),
    ("add(1, c=2)", lambda c, t, j: c.enqueue(t, 1, c=2), ("unexpected keyword argument 'c'",)),
    ("add()", lambda c, t, j: c.enqueue(t), ("missing a required argument",)),
    ("typed add(1, 'two')", lambda c, t, j: c.enqueue(_typed(c), 1, "two"), ("'b'", "int")),
    ("enqueue_many([5])", lambda c, t, j: c.enqueue_many([t.call(1), 5]), ("task.call",)),
    ("nan in a batch", lambda c, t, j: c.enqueue_many([t.call(1), t.call(NAN)]), ("NaN",)),
    ("enqueue_many(None)", lambda c, t, j: c.enqueue_many(None), ("enqueue_many",)),
    ("enqueue_many(call)", lambda c, t, j: c.enqueue_many(t.call(1)), ("enqueue_many",)),
    # PostgreSQL refuses a jsonb value over 256 MB (a raw ProgramLimitExceededError before).
    ("add(64 MiB string)", lambda c, t, j: c.enqueue(t, "x" * MIB64), ("bytes", "over the limit")),
    (
        "add by name(64 MiB)",
        lambda c, t, j: c.enqueue("add", 1, b="x" * MIB64),
        ("over the limit",),
    ),
    (
        "enqueue_many(9 x 60 MiB)",
        # One message carries a batch: past 1 GB the server drops the connection.
        lambda c, t, j: c.enqueue_many([t.call("x" * 60 * 2**20)] * 9),
        ("smaller batches",),
    ),
    # options
    *[
        (f"options({name}={value!r})", lambda c, t, j, n=name, v=value: t.options(**{n: v}), words)
        for name, value, words in [
            ("priority", True, ("priority",)),
            ("priority", 2**40, ("priority",)),
            ("priority", 1.5, ("priority",)),
            ("priority", "1", ("priority",)),
            ("max_attempts", 0, ("max_attempts",)),
            ("max_attempts", NAN, ("max_attempts",)),
            ("max_attempts", 2**31, ("max_attempts",)),
            ("timeout", NAN, ("timeout",)),
            ("timeout", -1, ("timeout",)),
            ("timeout", 0, ("timeout",)),
            ("timeout", INF, ("timeout",)),
            ("timeout", "1", ("timeout",)),
            ("delay", NAN, ("delay",)),
            ("delay", -1, ("delay",)),
            ("delay", INF, ("delay",)),
            ("delay", 1e12, ("delay", "years")),
            ("delay", 10**400, ("delay",)),
            ("delay", datetime.timedelta(days=999_999_999), ("delay",)),
            ("delay", True, ("delay",)),
            ("run_at", NAIVE, ("no time zone",)),
            ("run_at", LATE, ("too far",)),
            ("run_at", datetime.datetime(9500, 1, 1, tzinfo=UTC), ("too far",)),
            ("run_at", "2030-01-01", ("datetime",)),
            # asyncpg would store it as -infinity, which PostgreSQL can't subtract from now().
            ("run_at", datetime.datetime.min.replace(tzinfo=UTC), ("too far in the past",)),
            ("unique_key", "", ("unique_key", "empty")),
            ("unique_key", NUL, ("unique_key", "NUL")),
            ("unique_key", SURROGATE, ("unique_key", "surrogate")),
            ("unique_key", "k" * 513, ("unique_key", "at most")),
            ("unique_key", 5, ("unique_key",)),
            ("on_duplicate", "ignore", ("on_duplicate",)),
            ("after", "1", ("after",)),
            ("after", True, ("after",)),
            ("after", 0, ("job id",)),
            ("after", 2**63, ("job id",)),
            ("after", [], ("after",)),
            ("after", [1.5], ("after",)),
            ("on_parent_failure", "skip", ("on_parent_failure",)),
            ("queue", "", ("queue",)),
            ("queue", "a b", ("queue",)),
            ("queue", NUL, ("queue",)),
            ("retry", "fast", ("Backoff",)),
        ]
    ],
    ("Backoff(base=nan)", lambda c, t, j: asyncjobs.Backoff(base=NAN), ("base",)),
    ("Backoff(cap=inf)", lambda c, t, j: asyncjobs.Backoff(cap=INF), ("cap",)),
    ("Backoff(jitter='no')", lambda c, t, j: asyncjobs.Backoff(jitter="no"), ("jitter",)),  # type: ignore[arg-type]
    # schedules
    *[
        (
            f"schedules.{method}({value!r})",
            lambda c, t, j, m=method, v=value: getattr(c.schedules, m)(v),
            ("schedule name",),
        )
        for method in ("get", "pause", "resume", "remove", "trigger", "update")
        for value in ("", NUL, SURROGATE, 5, "n" * 201)
    ],
    ("schedules.add(NUL)", lambda c, t, j: c.schedules.add(NUL, t, "* * * * *"), ("NUL",)),
    ("schedules.add(cron NUL)", lambda c, t, j: c.schedules.add("s", t, "* * * * *\x00"), ("NUL",)),
    (
        "schedules.add(tz NUL)",
        lambda c, t, j: c.schedules.add("s", t, "* * * * *", timezone=NUL),
        ("time zone",),
    ),
    (
        "schedules.add(args nan)",
        lambda c, t, j: c.schedules.add("s", t, "* * * * *", args=[NAN]),
        ("NaN",),
    ),
    (
        "schedules.add(task NUL)",
        lambda c, t, j: c.schedules.add("s", NUL, "* * * * *"),
        ("no task",),
    ),
    (
        "schedules.add(priority True)",
        lambda c, t, j: c.schedules.add("s", t, "* * * * *", args=[1], priority=True),
        ("priority",),
    ),
    (
        "schedules.add(paused='no')",
        lambda c, t, j: c.schedules.add("s", t, "* * * * *", args=[1], paused="no"),
        ("paused",),
    ),
    (
        "schedules.add(args='1')",
        lambda c, t, j: c.schedules.add("s", t, "* * * * *", args="1"),
        ("args",),
    ),
    (
        "schedules.add(kwargs=[])",
        lambda c, t, j: c.schedules.add("s", t, "* * * * *", args=[1], kwargs=[]),
        ("kwargs",),
    ),
    ("schedules.add(task=5)", lambda c, t, j: c.schedules.add("s", 5, "* * * * *"), ("task",)),
    (
        "schedules.add(64 MiB args)",
        lambda c, t, j: c.schedules.add("s", t, "* * * * *", args=["x" * MIB64]),
        ("over the limit",),
    ),
    ("schedules.list('yes')", lambda c, t, j: c.schedules.list("yes"), ("declared",)),  # type: ignore[arg-type]
]


@pytest.mark.parametrize("case", CLIENT_CASES, ids=[c[0] for c in CLIENT_CASES])
async def test_the_client_refuses_bad_input_with_its_own_error(
    setup: tuple[asyncjobs.Client, Any, int], case: Case
) -> None:
    client, add, job_id = setup
    _, call, words = case
    before = await _snapshot(client)
    with pytest.raises(Exception) as raised:
        result = call(client, add, job_id)
        if isinstance(result, Awaitable):
            await result
    _assert_own_error(raised.value, *words)
    assert await _snapshot(client) == before
    # The client is still usable after the refusal.
    assert (await client.get(job_id)).args == [1]


APP_CASES: list[tuple[str, Callable[[str], Any], tuple[str, ...]]] = [
    ("App(dsn=12345)", lambda dsn: asyncjobs.App(12345), ("invalid dsn 12345", "must be a string")),  # type: ignore[arg-type]
    ("App(dsn=NUL)", lambda dsn: asyncjobs.App("postgresql://x\x00"), ("dsn", "NUL")),
    ("App(schema=5)", lambda dsn: asyncjobs.App(dsn, schema=5), ("schema",)),  # type: ignore[arg-type]
    ("App(migrate='no')", lambda dsn: asyncjobs.App(dsn, migrate="no"), ("migrate",)),  # type: ignore[arg-type]
    ("App(retention=5)", lambda dsn: asyncjobs.App(dsn, retention=5), ("retention",)),  # type: ignore[arg-type]
    ("task(name=NUL)", lambda dsn: asyncjobs.App(dsn).task(name=NUL)(print), ("task name",)),
    ("task(name=5)", lambda dsn: asyncjobs.App(dsn).task(name=5)(print), ("task name",)),  # type: ignore[arg-type]
    ("task(priority=True)", lambda dsn: asyncjobs.App(dsn).task(priority=True), ("priority",)),
    ("task(timeout=nan)", lambda dsn: asyncjobs.App(dsn).task(timeout=NAN), ("timeout",)),
    ("worker(queues=5)", lambda dsn: asyncjobs.App(dsn).worker(queues=5), ("queues",)),  # type: ignore[arg-type]
    ("worker(prune='no')", lambda dsn: asyncjobs.App(dsn).worker(prune="no"), ("prune",)),  # type: ignore[arg-type]
    (
        "sync_client(allow_unknown_tasks='yes')",
        lambda dsn: asyncjobs.App(dsn).sync_client(allow_unknown_tasks="yes"),  # type: ignore[arg-type]
        ("allow_unknown_tasks",),
    ),
    *[
        (
            f"Retention({name}={value!r})",
            lambda dsn, n=name, v=value: asyncjobs.Retention(**{n: v}),
            ("Retention", name),
        )
        for name, value in [
            ("succeeded", NAN),
            ("succeeded", INF),
            ("failed", -1),
            ("cancelled", True),
            ("interval", 0),
            ("interval", NAN),
            ("batch_size", True),
            ("batch_size", 1.5),
        ]
    ],
]


@pytest.mark.parametrize("case", APP_CASES, ids=[c[0] for c in APP_CASES])
def test_app_and_settings_refuse_bad_values(pg_dsn: str, case: Any) -> None:
    _, make, words = case
    with pytest.raises(Exception) as raised:
        make(pg_dsn)
    _assert_own_error(raised.value, *words)


async def test_a_port_out_of_range_is_a_configuration_error() -> None:
    app = asyncjobs.App("postgresql://postgres@127.0.0.1:99999/x")
    with pytest.raises(asyncjobs.ConfigurationError, match="invalid PostgreSQL DSN"):
        async with app.client():
            pass


async def test_the_sql_functions_take_odd_ids_without_harm(
    setup: tuple[asyncjobs.Client, Any, int],
) -> None:
    client, _, _ = setup
    before = await _snapshot(client)
    for function in ("cancel_job", "requeue_job", "delete_job"):
        for value in ("NULL", "0", "-1", "9223372036854775807"):
            found = await client.pool.fetchval(f'SELECT "{client.app.schema}".{function}({value})')
            assert found is None
    assert await _snapshot(client) == before


# -- rows written by plain SQL ------------------------------------------------------------

ODD_ROWS = [
    ("run_at", "'infinity'"),
    ("run_at", "'200000-01-01 00:00+00'"),
    ("run_at", "'4000-01-01 BC'"),
    ("created_at", "'-infinity'"),
    ("finished_at", "'infinity'"),
    ("args", "'[1e400]'"),
    ("args", "'[18446744073709551616000]'"),
    ("args", "'\"not a list\"'"),
    ("kwargs", "'[1]'"),
    ("result", "'" + "[" * 2000 + "]" * 2000 + "'"),
    ("errors", "'5'"),
    ("log", "'[\"a line\"]'"),
]


async def test_odd_rows_never_break_listings_or_get(
    setup: tuple[asyncjobs.Client, Any, int],
) -> None:
    client, _, job_id = setup
    schema = client.app.schema
    odd: list[int] = []
    for column, value in ODD_ROWS:
        values = {"task": "'odd'", "queue": "'default'", "state": "'succeeded'"}
        values |= {"max_attempts": "3", "finished_at": "now()", column: value}
        odd.append(
            await client.pool.fetchval(
                f'INSERT INTO "{schema}".jobs ({", ".join(values)}) '
                f"VALUES ({', '.join(values.values())}) RETURNING id"
            )
        )
    listed = await client.list_jobs(limit=100)
    assert {j.id for j in listed} == {job_id, *odd}
    for found in listed:
        assert found == await client.get(found.id)
    by_id = {j.id: j for j in listed}
    last = datetime.datetime.max.replace(tzinfo=UTC)
    first = datetime.datetime.min.replace(tzinfo=UTC)
    assert [by_id[i].run_at for i in odd[:3]] == [last, last, first]
    assert by_id[odd[3]].created_at == first and by_id[odd[4]].finished_at == last
    assert by_id[odd[5]].args.startswith("[1000000")  # shown as its JSON text
    assert by_id[odd[9]].result.startswith("[[[")
    assert by_id[odd[10]].errors == [{"message": 5}]
    assert by_id[odd[11]].log == [{"message": "a line"}]
    # And the same through the CLI.
    dsn_options = ["--dsn", client._dsn, "--schema", schema]
    done = await _invoke(["jobs", "list", "--limit", "100", *dsn_options])
    assert done.exit_code == 0, done.output
    assert done.output.count("odd") == len(ODD_ROWS)
    done = await _invoke(["jobs", "list", "--json", *dsn_options])
    assert done.exit_code == 0, done.output
    for one in odd:
        for extra in ([], ["--json"]):
            done = await _invoke(["jobs", "show", str(one), *dsn_options, *extra])
            assert done.exit_code == 0, (one, done.output, done.exception)


async def test_rows_the_sql_function_and_plain_sql_made_odd_break_no_worker_or_listing(
    app: asyncjobs.App, client: asyncjobs.Client, admin: asyncpg.Connection, caplog: Any
) -> None:
    """Plain SQL writes any jsonb and any time. Before: a number
    beyond a float's range crashed the worker that claimed it (its claim's other jobs left
    'processing'); a run_at of -infinity failed every start of its claim, for good; either
    infinity broke client.queues() and the queue depth metrics for the whole schema."""

    @app.task(name="echo")
    async def echo(x: Any) -> Any:
        return x

    schema = app.schema

    async def sql_enqueue(args: str) -> int:
        job_id: int = await admin.fetchval(
            f"SELECT \"{schema}\".enqueue('echo', $1::jsonb, allow_unknown_task => true)", args
        )
        return job_id

    # (The SQL function refuses such a number since migration 16; plain SQL writes it.)
    unreadable = await sql_enqueue("[0]")
    await admin.execute(f"UPDATE \"{schema}\".jobs SET args = '[1e400]' WHERE id = $1", unreadable)
    early, late = await sql_enqueue("[1]"), await sql_enqueue("[2]")
    for job_id, when in ((early, "-infinity"), (late, "infinity")):
        await admin.execute(
            f"""UPDATE "{schema}".jobs SET run_at = '{when}',
                       state = CASE WHEN '{when}' = 'infinity' THEN 'scheduled' ELSE state END
                 WHERE id = $1;
                UPDATE "{schema}".queue SET run_at = '{when}' WHERE job_id = $1""".replace(
                "$1", str(job_id)
            )
        )
    (default,) = await client.queues()
    assert (default.queued, default.scheduled) == (2, 1)
    assert default.oldest_wait is not None and default.oldest_wait > 3e10  # since year 1
    depth = await client.pool.fetch(client.sql.queue_stats)
    assert sorted((r["state"], r["jobs"]) for r in depth) == [("queued", 2), ("scheduled", 1)]
    async with app.worker():
        assert await client.wait(early, timeout=15) == 1
        with pytest.raises(asyncjobs.JobFailed, match="stored JSON can't be read") as failed:
            await client.wait(unreadable, timeout=15)
        assert "1000000000" in str(failed.value)
        assert await client.wait(await client.enqueue(echo, 3), timeout=15) == 3
    assert (await client.get(late)).state == "scheduled"
    assert (await client.get(unreadable)).attempt == 1  # failed at once, no retry
    # The idle fetcher's sleep until the next due row: infinity counts as year 9999.
    assert not [r for r in caplog.records if r.name == "asyncjobs.fetcher"], caplog.text


# -- the command line ---------------------------------------------------------------------


async def _invoke(args: list[str], env: dict[str, str] | None = None) -> Result:
    # In a thread: the CLI runs its own event loop.
    return await anyio.to_thread.run_sync(lambda: CliRunner().invoke(root_command, args, env=env))


CLI_CASES: list[tuple[list[str], int, str]] = [
    (["enqueue", "quick", "[NaN]"], 2, "NaN is not JSON"),
    (["enqueue", "quick", "[Infinity]"], 2, "Infinity is not JSON"),
    (["enqueue", "quick", "[1e400]"], 2, "infinite"),
    (["enqueue", "quick", "[18446744073709551616]"], 2, "64-bit"),
    (["enqueue", "quick", "[1]", "--kwargs", '{"x": 1e999}'], 2, "infinite"),
    (["enqueue", "quick", "[" * 5000 + "]" * 5000], 2, "not valid JSON"),
    (["enqueue", "quick", '["\\u0000"]'], 2, "NUL"),
    (["enqueue", "quick", '["\\udc80"]'], 2, "cannot be stored"),
    (["enqueue", "", "[1]"], 2, "is empty"),
    (["enqueue", SURROGATE, "[1]"], 2, "surrogate"),
    (["enqueue", "quick", "[1]", "--delay", "1e12"], 2, "delay"),
    (["enqueue", "quick", "[1]", "--delay", "nan"], 2, "delay"),
    (["enqueue", "quick", "[1]", "--delay", "inf"], 2, "delay"),
    (["enqueue", "quick", "[1]", "--priority", str(2**40)], 2, "priority"),
    (["enqueue", "quick", "[1]", "--unique-key", ""], 2, "unique_key"),
    (["enqueue", "quick", "[1]", "--unique-key", SURROGATE], 2, "unique_key"),
    (["enqueue", "quick", "[1]", "--after", str(2**63)], 2, "job id"),
    (
        ["enqueue", "quick", "[1]", "--app", "tests.worker_app:app", "--kwargs", '{"y": 1}'],
        2,
        "'y'",
    ),
    (["jobs", "show", "abc"], 2, "not a valid integer"),
    (["jobs", "show", str(HUGE)], 2, "JOB_ID"),
    (["jobs", "cancel", "0"], 2, "JOB_ID"),
    (["jobs", "requeue", "-5"], 2, "JOB_ID"),
    (["jobs", "delete", str(2**63)], 2, "JOB_ID"),
    (["jobs", "list", "--limit", "-1"], 2, "--limit"),
    (["jobs", "list", "--limit", str(HUGE)], 2, "--limit"),
    (["workers", "stop", "--grace", "nan"], 2, "grace"),
    (
        [
            "schedules",
            "add",
            SURROGATE,
            "quick",
            "* * * * *",
            "[1]",
            "--app",
            "tests.worker_app:app",
        ],
        2,
        "surrogate",
    ),
    (
        ["schedules", "add", "s", "quick", "* * * * *", "[NaN]", "--app", "tests.worker_app:app"],
        2,
        "NaN",
    ),
    (["schedules", "update", "s", "--args", "[Infinity]"], 2, "Infinity"),
    (["worker", "tests.worker_app:app", "--keep-failed", "9" * 400], 2, "Retention failed"),
]


@pytest.mark.parametrize("case", CLI_CASES, ids=[" ".join(c[0])[:60] for c in CLI_CASES])
async def test_the_cli_refuses_bad_input_in_one_line(
    pg_dsn: str, schema: str, case: tuple[list[str], int, str]
) -> None:
    command, code, message = case
    done = await _invoke(command, {"ASYNCJOBS_DSN": pg_dsn, "ASYNCJOBS_SCHEMA": schema})
    assert done.exit_code == code, (done.output, done.exception)
    assert isinstance(done.exception, SystemExit), repr(done.exception)
    assert message in done.output, done.output


async def test_a_dsn_with_an_impossible_port_is_one_line() -> None:
    done = await _invoke(["jobs", "list", "--dsn", "postgresql://postgres@127.0.0.1:99999/x"])
    assert done.exit_code == 1, (done.output, done.exception)
    assert isinstance(done.exception, SystemExit), repr(done.exception)
    assert "invalid PostgreSQL DSN" in done.output


@dataclasses.dataclass
class _Point:
    x: float


async def test_a_client_used_after_its_block_says_so(app: asyncjobs.App) -> None:
    async with app.client() as client:
        pass
    with pytest.raises(RuntimeError, match=r"inside `async with app\.client"):
        await client.enqueue("anything")


async def test_nan_inside_a_dataclass_is_refused(setup: tuple[asyncjobs.Client, Any, int]) -> None:
    client, add, _ = setup
    with pytest.raises(asyncjobs.SerializationError, match="NaN"):
        await client.enqueue(add, _Point(NAN))


async def test_an_enqueue_of_fine_values_still_works(
    setup: tuple[asyncjobs.Client, Any, int], admin: asyncpg.Connection
) -> None:
    client, add, _ = setup
    soon = datetime.datetime(8999, 1, 1, tzinfo=UTC)
    ids = [
        await client.enqueue(add, 2**63 - 1),
        await client.enqueue(add, -1.5, b=None),
        await client.enqueue(add.options(run_at=soon, priority=-(2**31), delay=None), 0),
        await client.enqueue(add.options(delay=datetime.timedelta(days=36_000)), 0),
    ]
    jobs = [await client.get(i) for i in ids]
    assert jobs[0].args == [2**63 - 1]
    assert jobs[1].kwargs == {"b": None}
    assert jobs[2].run_at == soon
    assert len(await client.list_jobs()) == 5


# Before: the error's lone surrogate could not be stored, and the worker never finished.
@pytest.mark.timeout(60)
async def test_a_job_reporting_lone_surrogates_and_nan_keeps_its_reports(
    app: asyncjobs.App, client: asyncjobs.Client
) -> None:
    @app.task(name="odd_reports", max_attempts=1)
    async def odd_reports() -> float:
        job = asyncjobs.current_job()
        job.progress(0.5, SURROGATE)
        job.log(SURROGATE)
        raise ValueError(f"bad byte {SURROGATE}")

    @app.task(name="nan_result", max_attempts=1)
    async def nan_result() -> float:
        return NAN

    reports = await client.enqueue(odd_reports)
    result = await client.enqueue(nan_result)
    async with app.worker():
        with pytest.raises(asyncjobs.JobFailed):
            await client.wait(reports, timeout=15)
        with pytest.raises(asyncjobs.JobFailed, match="NaN"):
            await client.wait(result, timeout=15)
    job = await client.get(reports)
    assert job.progress_message == "a\\udc80b"
    assert [line["message"] for line in job.log] == ["a\\udc80b"]
    assert job.error is not None and job.error["message"] == "bad byte a\\udc80b"
    assert (await client.get(result)).result is None
