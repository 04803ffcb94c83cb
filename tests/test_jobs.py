"""Enqueue, run, results, retries, failures and bad input, against real PostgreSQL."""

from __future__ import annotations

import dataclasses
import datetime
import json

import anyio
import asyncpg
import pytest

import asyncjobs
import asyncjobs.serialization


async def test_enqueue_runs_and_wait_returns_result(app: asyncjobs.App) -> None:
    @app.task
    async def add(a: int, b: int) -> int:
        return a + b

    async with app.client() as client, app.worker(concurrency=2):
        job_id = await client.enqueue(add, 2, b=3)
        assert await client.wait(job_id, timeout=10) == 5
        job = await client.get(job_id)
    assert job.state is asyncjobs.JobState.SUCCEEDED
    assert job.attempt == 1
    assert job.args == [2] and job.kwargs == {"b": 3}
    assert job.started_at is not None and job.finished_at is not None


async def test_sync_task_runs_in_a_thread(app: asyncjobs.App) -> None:
    import threading

    main = threading.get_ident()

    @app.task
    def where(token: asyncjobs.CancelToken, n: int) -> bool:
        assert not token.cancelled
        return threading.get_ident() != main

    async with app.client() as client, app.worker():
        assert await client.wait(await client.enqueue(where, 1), timeout=10) is True


async def test_enqueue_many_is_one_statement_and_keeps_order(
    app: asyncjobs.App, client: asyncjobs.Client
) -> None:
    @app.task
    async def echo(x: int) -> int:
        return x

    ids = await client.enqueue_many(echo.call(i) for i in range(500))
    assert ids == sorted(ids) and len(set(ids)) == 500
    async with app.worker(concurrency=20):
        results = [await client.wait(i, timeout=20) for i in ids]
    assert results == list(range(500))


async def test_enqueue_many_stores_each_calls_own_options(
    app: asyncjobs.App, client: asyncjobs.Client, admin: asyncpg.Connection, schema: str
) -> None:
    @app.task(queue="q1", priority=1, max_attempts=2)
    async def work(x: int, y: str = "-") -> None: ...

    run_at = datetime.datetime(2100, 1, 1, tzinfo=datetime.UTC)
    calls = [
        work.call(0),
        work.options(delay=60, priority=5).call(1, y="b"),
        work.options(queue="q2", max_attempts=7, timeout=3).call(2),
        work.options(run_at=run_at, retry=asyncjobs.Backoff(base=2, cap=9)).call(3),
        work.options(priority=1).call(4),  # options equal to the task's, not the same object
    ]
    ids = await client.enqueue_many(calls)
    rows = await admin.fetch(
        f"SELECT args::text, kwargs::text, queue, priority, max_attempts, timeout, state,"
        f' run_at = $2 AS at, backoff::text FROM "{schema}".jobs WHERE id = ANY($1) ORDER BY id',
        ids,
        run_at,
    )
    assert [tuple(r) for r in rows] == [
        ("[0]", "{}", "q1", 1, 2, None, "queued", False, None),
        ("[1]", '{"y": "b"}', "q1", 5, 2, None, "scheduled", False, None),
        ("[2]", "{}", "q2", 1, 7, 3.0, "queued", False, None),
        ("[3]", "{}", "q1", 1, 2, None, "scheduled", True, '{"cap": 9, "base": 2, "jitter": true}'),
        ("[4]", "{}", "q1", 1, 2, None, "queued", False, None),
    ]
    # The same batch with one shared options object each time.
    same = await client.enqueue_many(work.options(delay=60).call(i) for i in range(3))
    states = await admin.fetch(
        f'SELECT state, queue FROM "{schema}".jobs WHERE id = ANY($1) ORDER BY id', same
    )
    assert [tuple(r) for r in states] == [("scheduled", "q1")] * 3


async def test_enqueue_many_keeps_call_order_across_tasks_and_options(
    app: asyncjobs.App, client: asyncjobs.Client, admin: asyncpg.Connection, schema: str
) -> None:
    # A batch goes as its calls' arguments plus one row per distinct (task, options):
    # interleaving them must still give every call its own id, arguments and options.
    @app.task(queue="a")
    async def first(x: str) -> None: ...

    @app.task(queue="b")
    async def second(x: str, y: int = 0) -> None: ...

    urgent = second.options(priority=9)
    # Separators and escapes of JSON and of the encoding travel inside arguments as they are.
    text = 'rs\x1e nl\n tab\t quote" backslash\\ ü'
    calls = []
    for i in range(300):
        match i % 3:
            case 0:
                calls.append(first.call(f"{text}{i}"))
            case 1:
                calls.append(urgent.call(f"{i}", y=i))
            case _:
                calls.append(second.call(f"{i}"))
    ids = await client.enqueue_many(calls)
    assert ids == sorted(ids) and len(set(ids)) == 300
    rows = await admin.fetch(
        f'SELECT id, task, queue, priority, args, kwargs FROM "{schema}".jobs'
        " WHERE id = ANY($1) ORDER BY id",
        ids,
    )
    expected = [
        (
            call.task,
            call.options.queue,
            call.options.priority,
            asyncjobs.serialization.loads(call.args),
            asyncjobs.serialization.loads(call.kwargs),
        )
        for call in calls
    ]
    got = [
        (r["task"], r["queue"], r["priority"], json.loads(r["args"]), json.loads(r["kwargs"]))
        for r in rows
    ]
    assert got == expected
    assert got[0][3] == [f"{text}0"]


async def test_enqueue_many_refuses_arguments_that_are_not_json(
    app: asyncjobs.App, client: asyncjobs.Client, admin: asyncpg.Connection, schema: str
) -> None:
    @app.task
    async def noop(x: int) -> None: ...

    kept = await client.enqueue(noop, 1)
    # Hand-made calls bypass task.call's encoding: the batch fails as a whole, nothing lost.
    forged = asyncjobs.TaskCall(noop.name, b"[1]\x1e[2]", b"{}", noop.defaults)
    with pytest.raises(asyncjobs.SerializationError, match="not JSON text"):
        await client.enqueue_many([noop.call(2), forged])
    with pytest.raises(asyncpg.InvalidTextRepresentationError):
        await client.enqueue_many([asyncjobs.TaskCall(noop.name, b"[1", b"{}", noop.defaults)])
    assert await admin.fetchval(f'SELECT array_agg(id) FROM "{schema}".jobs') == [kept]
    assert await admin.fetchval(f'SELECT count(*) FROM "{schema}".queue') == 1


async def test_transactional_enqueue_commits_and_rolls_back_with_the_caller(
    app: asyncjobs.App, client: asyncjobs.Client, pg_dsn: str
) -> None:
    @app.task
    async def noop() -> None: ...

    conn = await asyncpg.connect(pg_dsn)
    try:
        async with conn.transaction():
            kept = await client.enqueue_tx(conn, noop)
        with pytest.raises(RuntimeError):
            async with conn.transaction():
                dropped = await client.enqueue_tx(conn, noop)
                raise RuntimeError("caller's own work failed")
    finally:
        await conn.close()
    assert (await client.get(kept)).state is asyncjobs.JobState.QUEUED
    with pytest.raises(asyncjobs.JobNotFound):
        await client.get(dropped)


async def test_failing_job_retries_then_fails_with_every_error(
    app: asyncjobs.App, client: asyncjobs.Client
) -> None:
    @app.task(max_attempts=3, retry=asyncjobs.Backoff(base=0.01))
    async def broken() -> None:
        raise ValueError("nope")

    job_id = await client.enqueue(broken)
    async with app.worker():
        with pytest.raises(asyncjobs.JobFailed) as failed:
            await client.wait(job_id, timeout=20)
    assert failed.value.error["type"] == "ValueError"
    job = await client.get(job_id)
    assert job.state is asyncjobs.JobState.FAILED and job.attempt == 3
    assert [e["attempt"] for e in job.errors] == [1, 2, 3]
    assert "ValueError: nope" in job.errors[0]["traceback"]


async def test_timeout_fails_the_attempt(app: asyncjobs.App, client: asyncjobs.Client) -> None:
    @app.task(timeout=0.2, max_attempts=1)
    async def slow() -> None:
        await anyio.sleep(30)

    job_id = await client.enqueue(slow)
    async with app.worker():
        with pytest.raises(asyncjobs.JobFailed, match="timeout"):
            await client.wait(job_id, timeout=10)


async def test_delay_and_priority(app: asyncjobs.App, client: asyncjobs.Client) -> None:
    order: list[str] = []

    @app.task
    async def mark(name: str) -> None:
        order.append(name)

    later = await client.enqueue(mark.options(delay=0.5), "later")
    assert (await client.get(later)).state is asyncjobs.JobState.SCHEDULED
    low = await client.enqueue(mark.options(priority=-1), "low")
    high = await client.enqueue(mark.options(priority=5), "high")
    async with app.worker(concurrency=1):
        for job_id in (low, high, later):
            await client.wait(job_id, timeout=10)
    assert order == ["high", "low", "later"]
    job = await client.get(later)
    assert job.started_at is not None and job.started_at >= job.run_at


async def test_a_worker_takes_its_queues_in_the_order_listed(
    app: asyncjobs.App, client: asyncjobs.Client
) -> None:
    order: list[str] = []

    @app.task
    async def mark(name: str) -> None:
        order.append(name)

    # Priority orders jobs within a queue, never across: "later" outranks everything in
    # "first", and still waits for it.
    ids = [
        await client.enqueue(mark.options(queue="later", priority=10), "later-high"),
        await client.enqueue(mark.options(queue="later"), "later-low"),
        await client.enqueue(mark.options(queue="first"), "first-low"),
        await client.enqueue(mark.options(queue="first", priority=1), "first-high"),
        await client.enqueue(mark.options(queue="ignored", priority=99), "ignored"),
    ]
    async with app.worker(concurrency=1, queues=["first", "later"]):
        for job_id in ids[:4]:
            await client.wait(job_id, timeout=10)
    assert order == ["first-high", "first-low", "later-high", "later-low"]
    assert (await client.get(ids[4])).state is asyncjobs.JobState.QUEUED


async def test_plain_signatures_are_checked_as_bind_would(app: asyncjobs.App) -> None:
    @app.task
    async def plain(a: int, b: int = 2, c: int = 3) -> None: ...

    fine: list[tuple[tuple[int, ...], dict[str, int]]] = [
        ((1,), {}),
        ((1, 2, 3), {}),
        ((), {"a": 1}),
        ((1,), {"c": 5}),
        ((), {"c": 1, "a": 2, "b": 3}),
    ]
    wrong: list[tuple[tuple[int, ...], dict[str, int]]] = [
        ((), {}),
        ((1, 2, 3, 4), {}),
        ((1,), {"a": 1}),
        ((1,), {"d": 1}),
        ((), {"b": 1}),
    ]
    for args, kwargs in fine:
        assert plain.call(*args, **kwargs).task == plain.name
    for args, kwargs in wrong:
        with pytest.raises(TypeError, match=r"task .*plain"):
            plain.call(*args, **kwargs)


async def test_unknown_task_fails_that_job_clearly(
    app: asyncjobs.App, client: asyncjobs.Client
) -> None:
    @app.task(max_attempts=1)
    async def fine() -> str:
        return "ok"

    ghost = await client.enqueue("no.such.task", 1)
    good = await client.enqueue(fine)
    async with app.worker(queues=["default"]):
        assert await client.wait(good, timeout=10) == "ok"
        with pytest.raises(asyncjobs.JobFailed, match=r"no task named 'no\.such\.task'"):
            await client.wait(ghost, timeout=30)


async def test_corrupt_arguments_fail_that_job_only(
    app: asyncjobs.App, client: asyncjobs.Client, admin: asyncpg.Connection, schema: str
) -> None:
    @app.task
    async def takes_two(a: int, b: int) -> int:
        return a + b

    bad = await client.enqueue(takes_two, 1, 2)
    await admin.execute(f'UPDATE "{schema}".jobs SET args = \'"not a list"\' WHERE id = $1', bad)
    wrong = await client.enqueue(takes_two, 1, 2)
    await admin.execute(f"UPDATE \"{schema}\".jobs SET args = '[1, 2, 3]' WHERE id = $1", wrong)
    good = await client.enqueue(takes_two, 1, 2)
    async with app.worker():
        assert await client.wait(good, timeout=10) == 3
        for job_id in (bad, wrong):
            with pytest.raises(asyncjobs.JobFailed, match="don't fit"):
                await client.wait(job_id, timeout=10)
            assert (await client.get(job_id)).attempt == 1  # not retried


async def test_unserializable_arguments_name_the_argument_and_store_nothing(
    app: asyncjobs.App, client: asyncjobs.Client, admin: asyncpg.Connection, schema: str
) -> None:
    @app.task
    async def send(to: str, *, attachment: object) -> None: ...

    with pytest.raises(TypeError, match="argument 'attachment'") as raised:
        await client.enqueue(send, "a@example.com", attachment=object())
    assert isinstance(raised.value, asyncjobs.SerializationError)
    with pytest.raises(TypeError, match="positional argument 0") as raised:
        await client.enqueue(send, {1, 2}, attachment=None)  # type: ignore[arg-type]
    assert isinstance(raised.value, asyncjobs.SerializationError)
    with pytest.raises(TypeError, match="missing a required argument"):
        await client.enqueue(send, "a@example.com")  # type: ignore[call-arg]
    assert await admin.fetchval(f'SELECT count(*) FROM "{schema}".jobs') == 0


async def test_unserializable_result_fails_the_job(
    app: asyncjobs.App, client: asyncjobs.Client
) -> None:
    @app.task
    async def gives_object() -> object:
        return object()

    job_id = await client.enqueue(gives_object)
    async with app.worker():
        with pytest.raises(asyncjobs.JobFailed, match="result of task"):
            await client.wait(job_id, timeout=10)


async def test_nul_characters_are_refused_up_front_or_shown_never_wedging_the_worker(
    app: asyncjobs.App, client: asyncjobs.Client, admin: asyncpg.Connection, schema: str
) -> None:
    # PostgreSQL's jsonb and text cannot hold U+0000. A value that has one must not reach
    # the worker's one writer, where a refused write once blocked every later outcome.
    @app.task
    async def echo(text: str, *, fail: bool = False) -> str:
        job = asyncjobs.current_job()
        job.progress(0.5, "half\x00way")
        job.log("line\x00one")
        if fail:
            raise ValueError("bad\x00value")
        return text

    @app.task
    async def gives_nul() -> str:
        return "a\x00b"

    with pytest.raises(asyncjobs.SerializationError, match=r"positional argument 0 .* NUL"):
        await client.enqueue(echo, "a\x00b")
    with pytest.raises(asyncjobs.SerializationError, match=r"argument 'text' .* NUL"):
        await client.enqueue(echo, text="a\x00b")
    # The text \u0000 (backslash, u, 0000) is not a NUL character.
    assert await client.enqueue(echo, "\\u0000") > 0
    nul_result = await client.enqueue(gives_nul)
    failing = await client.enqueue(echo.options(max_attempts=1), "x", fail=True)
    fine = await client.enqueue(echo, "fine")
    async with app.worker():
        with pytest.raises(asyncjobs.JobFailed, match=r"result of task .* NUL"):
            await client.wait(nul_result, timeout=10)
        with pytest.raises(asyncjobs.JobFailed, match=r"bad\\x00value"):
            await client.wait(failing, timeout=10)
        assert await client.wait(fine, timeout=10) == "fine"
    job = await client.get(fine)
    assert job.progress_message == "half\\x00way"
    assert [line["message"] for line in job.log] == ["line\\x00one"]


async def test_an_outcome_the_database_refuses_fails_that_job_alone(
    app: asyncjobs.App, client: asyncjobs.Client, admin: asyncpg.Connection, schema: str
) -> None:
    # Outcomes are written many per statement. One the database refuses (here a constraint
    # stands in for any refusal) must not hold back the others, nor the worker's shutdown.
    @app.task
    async def give(value: str) -> str:
        await anyio.sleep(0.05)
        return value

    await admin.execute(
        f'ALTER TABLE "{schema}".jobs ADD CONSTRAINT no_poison'
        " CHECK (result IS NULL OR result <> '\"poison\"'::jsonb)"
    )
    values = [f"v{i}" for i in range(20)]
    values[7] = "poison"
    ids = await client.enqueue_many(give.call(v) for v in values)
    with anyio.fail_after(20):
        async with app.worker(concurrency=20):
            for job_id, value in zip(ids, values, strict=True):
                if value == "poison":
                    with pytest.raises(asyncjobs.JobFailed, match="could not be stored"):
                        await client.wait(job_id, timeout=10)
                else:
                    assert await client.wait(job_id, timeout=10) == value


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"queue": "has space"}, "invalid queue name"),
        ({"priority": 2**40}, "priority"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"timeout": -1}, "timeout"),
        ({"delay": -5}, "delay"),
        ({"run_at": datetime.datetime(2030, 1, 1)}, "no time zone"),
    ],
)
def test_invalid_options_are_rejected(options: dict[str, object], message: str) -> None:
    app = asyncjobs.App("postgresql://unused")

    @app.task
    async def task() -> None: ...

    with pytest.raises(asyncjobs.ConfigurationError, match=message):
        task.options(**options)  # type: ignore[arg-type]


def test_invalid_worker_and_app_settings_are_rejected() -> None:
    with pytest.raises(asyncjobs.ConfigurationError, match="schema name"):
        asyncjobs.App("postgresql://unused", schema="Robert'); DROP TABLE")
    app = asyncjobs.App("postgresql://unused")
    with pytest.raises(asyncjobs.ConfigurationError, match="concurrency"):
        app.worker(concurrency=0)
    with pytest.raises(asyncjobs.ConfigurationError, match="queue name"):
        app.worker(queues=["ok", "not ok"])
    with pytest.raises(asyncjobs.ConfigurationError, match="string"):
        app.worker(queues="emails")  # type: ignore[arg-type]


async def test_unreachable_server_and_wrong_dsn_give_clear_errors() -> None:
    refused = asyncjobs.App("postgresql://postgres@127.0.0.1:1/test")
    with pytest.raises(asyncjobs.ConnectionFailed, match="cannot connect to PostgreSQL at"):
        async with refused.client():
            pass
    secret = asyncjobs.App("postgresql://bob:hunter2@127.0.0.1:1/test")
    with pytest.raises(asyncjobs.ConnectionFailed) as raised:
        async with secret.client():
            pass
    assert "hunter2" not in str(raised.value)
    garbage = asyncjobs.App("not a dsn at all")
    with pytest.raises(asyncjobs.AsyncJobsError, match="DSN"):
        async with garbage.client():
            pass


async def test_missing_database_names_the_fix(pg_dsn: str) -> None:
    base = pg_dsn.split("?", maxsplit=1)[0].rsplit("/", 1)[0]
    query = "?" + pg_dsn.split("?", 1)[1] if "?" in pg_dsn else ""
    missing = asyncjobs.App(f"{base}/no_such_db_here{query}")
    with pytest.raises(asyncjobs.ConnectionFailed, match="create the database"):
        async with missing.client():
            pass


async def test_worker_retries_an_unreachable_server_until_stopped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = asyncjobs.App("postgresql://postgres@127.0.0.1:1/test")
    worker = app.worker()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            await anyio.sleep(1.2)
            worker.stop()
    attempts = [r for r in caplog.records if "worker cannot start" in r.getMessage()]
    assert len(attempts) >= 2


async def test_job_is_a_plain_snapshot(app: asyncjobs.App, client: asyncjobs.Client) -> None:
    @app.task
    async def noop() -> None: ...

    job = await client.get(await client.enqueue(noop))
    assert dataclasses.asdict(job)["task"].endswith("noop")
    with pytest.raises(asyncjobs.JobNotFound):
        await client.get(10**12)


async def test_jobs_fed_one_at_a_time_share_a_bounded_number_of_claim_sessions(
    app: asyncjobs.App, client: asyncjobs.Client, admin: asyncpg.Connection
) -> None:
    running = 0
    most = 0
    release = anyio.Event()
    runs: list[int] = []

    @app.task
    async def hold(n: int) -> int:
        nonlocal running, most
        running += 1
        most = max(most, running)
        runs.append(n)
        try:
            await release.wait()
        finally:
            running -= 1
        return n

    async with app.worker(concurrency=12, claim_sessions=2):
        ids = []
        for n in range(12):
            ids.append(await client.enqueue(hold, n))
            await anyio.sleep(0.02)  # each one claimed on its own
        with anyio.fail_after(20):
            while running < 12:
                await anyio.sleep(0.01)
        # Sessions holding claims: those that deleted a row of this schema's queue.
        holders = await admin.fetchval(
            "SELECT count(DISTINCT pid) FROM pg_locks WHERE relation = $1::regclass "
            "AND mode = 'RowExclusiveLock' AND granted",
            f'"{app.schema}".queue',
        )
        assert holders <= 2
        release.set()
        assert [await client.wait(i, timeout=20) for i in ids] == list(range(12))
    assert most == 12 and sorted(runs) == list(range(12))
    for job_id in ids:
        assert (await client.get(job_id)).attempt == 1
    with pytest.raises(asyncjobs.ConfigurationError, match="claim_sessions"):
        app.worker(claim_sessions=0)


async def test_a_worker_refused_by_the_server_raises_instead_of_retrying(pg_dsn: str) -> None:
    # No retry mends a missing database or a refused login: the worker says so at once.
    base = pg_dsn.split("?", maxsplit=1)[0].rsplit("/", 1)[0]
    query = "?" + pg_dsn.split("?", 1)[1] if "?" in pg_dsn else ""
    scheme, _, rest = base.partition("://")
    host = rest.rpartition("@")[2]
    refusals = {
        f"{base}/no_such_db_here{query}": "create the database",
        f"{scheme}://no_such_role_here@{host}/postgres{query}": "check the user and password",
    }
    for dsn, hint in refusals.items():
        with anyio.fail_after(10), pytest.raises(asyncjobs.ConnectionFailed, match=hint) as raised:
            async with asyncjobs.App(dsn).worker():
                pytest.fail("the worker started")
        assert raised.value.permanent
