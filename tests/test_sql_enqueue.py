"""`SELECT <schema>.enqueue('task', args => ...)`: a job from plain SQL (any language, tool
or trigger), checked as the client checks it, in the caller's transaction with its NOTIFY."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Literal

import anyio
import asyncpg
import pytest

import asyncjobs
from asyncjobs.client.enqueue import refused
from tests.helpers import Spawn, until, workers_up


@pytest.fixture
async def known(pg_dsn: str, schema: str) -> None:
    """Task names a worker has had: 'quick' (of tests.worker_app) and 'mail.send'."""
    app = asyncjobs.App(pg_dsn, schema=schema)

    @app.task(name="quick")
    async def quick(x: int) -> int:
        return x

    @app.task(name="mail.send", queue="emails", max_attempts=7, priority=2, timeout=30)
    async def send(to: str, subject: str = "") -> None: ...

    async with app.worker(concurrency=1):
        pass


def _sql(schema: str, call: str) -> str:
    return f'SELECT "{schema}".{call}'


async def test_a_job_from_sql_takes_the_tasks_options_and_runs_on_a_worker(
    known: None,
    admin: asyncpg.Connection,
    schema: str,
    client: asyncjobs.Client,
    spawn_worker: Spawn,
) -> None:
    mail = await admin.fetchval(
        _sql(
            schema,
            "enqueue('mail.send', args => '[\"a@example.com\"]', "
            'kwargs => \'{"subject": "hi"}\')',
        )
    )
    job = await client.get(mail)
    assert (job.task, job.args, job.kwargs) == ("mail.send", ["a@example.com"], {"subject": "hi"})
    assert (job.queue, job.priority, job.max_attempts, job.timeout) == ("emails", 2, 7, 30.0)
    assert job.state is asyncjobs.JobState.QUEUED

    given = await client.get(
        await admin.fetchval(
            _sql(
                schema,
                "enqueue('mail.send', queue => 'bulk', priority => -1, max_attempts => 1, "
                "delay => 60)",
            )
        )
    )
    assert (given.queue, given.priority, given.max_attempts) == ("bulk", -1, 1)
    assert given.state is asyncjobs.JobState.SCHEDULED

    spawn_worker()
    await workers_up(client, 1)
    job_id = await admin.fetchval(_sql(schema, "enqueue('quick', args => '[5]')"))
    assert await client.wait(job_id, timeout=30) == 5


async def test_the_notify_goes_out_at_commit_and_a_rollback_leaves_nothing(
    known: None, pg_dsn: str, admin: asyncpg.Connection, schema: str
) -> None:
    heard: list[str] = []
    await admin.add_listener(f"{schema}.enqueue", lambda *a: heard.append(a[-1]))
    conn = await asyncpg.connect(pg_dsn)
    try:
        async with conn.transaction():
            await conn.fetchval(_sql(schema, "enqueue('quick', args => '[1]')"))
            await conn.execute("SELECT pg_sleep(0.2)")
            assert heard == []
        tr = conn.transaction()
        await tr.start()
        await conn.fetchval(_sql(schema, "enqueue('mail.send', args => '[\"x\"]')"))
        await tr.rollback()
        await conn.execute("SELECT pg_sleep(0.2)")
    finally:
        await conn.close()
    assert heard == ["default"]
    assert await admin.fetchval(f'SELECT count(*) FROM "{schema}".jobs') == 1


async def test_unique_keys_as_the_client_has_them(
    known: None, admin: asyncpg.Connection, schema: str, client: asyncjobs.Client
) -> None:
    call = "enqueue('quick', args => '[1]', unique_key => 'user:42')"
    first = await admin.fetchval(_sql(schema, call))
    assert await admin.fetchval(_sql(schema, call)) == first
    with pytest.raises(asyncpg.UniqueViolationError) as raised:
        await admin.fetchval(
            _sql(
                schema,
                "enqueue('quick', args => '[2]', unique_key => 'user:42', on_duplicate => 'raise')",
            )
        )
    assert raised.value.constraint_name == "asyncjobs_unique_key"
    assert "user:42" in str(raised.value)
    # The client's own enqueue sees the same key.
    assert (
        await client.enqueue(
            asyncjobs.Task(
                lambda x: x,
                name="quick",
                options=asyncjobs.JobOptions(unique_key="user:42"),
                backoff=asyncjobs.Backoff(),
            ),
            3,
        )
        == first
    )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ("enqueue('')", "invalid task name '': it is empty"),
        ("enqueue('   ')", "it is empty"),
        ("enqueue(NULL)", "it is empty"),
        ("enqueue(repeat('x', 1001))", "at most 1000"),
        ("enqueue('quik')", "no worker has ever had a task named 'quik'; did you mean 'quick'?"),
        ("enqueue('other.send')", "did you mean 'mail.send'?"),
        ("enqueue('quick', queue => 'a b')", "invalid queue name 'a b'"),
        ("enqueue('quick', queue => '')", "invalid queue name"),
        ("enqueue('quick', max_attempts => 0)", "max_attempts must be an integer >= 1"),
        ("enqueue('quick', timeout => 0)", "timeout must be seconds > 0"),
        ("enqueue('quick', timeout => 'NaN')", "timeout must be seconds > 0"),
        ("enqueue('quick', timeout => 'Infinity')", "timeout must be seconds > 0"),
        ("enqueue('quick', delay => -1)", "delay must be seconds >= 0"),
        ("enqueue('quick', delay => 'NaN')", "delay must be seconds >= 0"),
        ("enqueue('quick', delay => 1e12)", "at most 100 years"),
        ("enqueue('quick', delay => 1, run_at => now())", "pass delay or run_at, not both"),
        ("enqueue('quick', run_at => 'infinity')", "too far in the future"),
        ("enqueue('quick', run_at => '9500-01-01Z')", "too far in the future"),
        ("enqueue('quick', run_at => '-infinity')", "too far in the past"),
        ("enqueue('quick', run_at => '0001-01-01Z')", "too far in the past"),
        ("enqueue('quick', args => '[1e400]')", "numbers within a float's range"),
        ("enqueue('quick', kwargs => '{\"x\": [{\"y\": -2e308}]}')", "within a float's range"),
        ("enqueue('quick', args => '{\"x\": 1}')", "args must be a JSON array"),
        ("enqueue('quick', args => '1')", "args must be a JSON array"),
        ("enqueue('quick', kwargs => '[1]')", "kwargs must be a JSON object"),
        ("enqueue('quick', unique_key => ' ')", "invalid unique_key"),
        ("enqueue('quick', unique_key => repeat('k', 513))", "invalid unique_key"),
        ("enqueue('quick', on_duplicate => 'ignore')", "on_duplicate must be 'existing'"),
        ("enqueue('quick', after => '{}')", "after needs at least one job id (or leave it out)"),
        ("enqueue('quick', after => ARRAY[]::bigint[])", "after needs at least one job id"),
        (
            "enqueue('quick', after => ARRAY[1, NULL])",
            "after must be job ids (integers), got {1,NULL}",
        ),
        ("enqueue('quick', after => ARRAY[[1, 2]])", "after must be job ids (integers)"),
        (
            "enqueue('quick', after => ARRAY[5, 0])",
            "a job id is an integer >= 1 (as enqueue returned it), got 0",
        ),
        ("enqueue('quick', after => ARRAY[7])", "cannot enqueue after job 7: no such job"),
        (
            "enqueue('quick', on_parent_failure => 'ignore')",
            "on_parent_failure must be 'cancel' (the default) or 'run' (run anyway), got 'ignore'",
        ),
        ("enqueue('quick', after => ARRAY[7], on_parent_failure => NULL)", "got NULL"),
    ],
)
async def test_bad_input_is_refused_with_the_clients_words_and_stores_nothing(
    known: None, admin: asyncpg.Connection, schema: str, call: str, message: str
) -> None:
    with pytest.raises(asyncpg.PostgresError) as raised:
        await admin.fetchval(_sql(schema, call))
    assert message in str(raised.value)
    assert await admin.fetchval(f'SELECT count(*) FROM "{schema}".jobs') == 0


async def test_an_unknown_task_is_enqueued_when_allowed(
    admin: asyncpg.Connection, schema: str, client: asyncjobs.Client
) -> None:
    with pytest.raises(asyncpg.UndefinedObjectError) as raised:
        await admin.fetchval(_sql(schema, "enqueue('billing.charge', args => '[1]')"))
    assert "allow_unknown_task => true" in (raised.value.hint or "")
    job_id = await admin.fetchval(
        _sql(schema, "enqueue('billing.charge', args => '[1]', allow_unknown_task => true)")
    )
    job = await client.get(job_id)
    assert (job.task, job.queue, job.max_attempts) == ("billing.charge", "default", 3)


async def test_a_trigger_enqueues_a_job_with_the_row_it_saw(
    known: None, admin: asyncpg.Connection, schema: str, client: asyncjobs.Client
) -> None:
    # The README's example: a job for every new signup, committed with the row.
    await admin.execute(f"""
        CREATE TABLE "{schema}".signups (id serial PRIMARY KEY, email text NOT NULL);
        CREATE FUNCTION "{schema}".welcome() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM "{schema}".enqueue('mail.send', args => jsonb_build_array(NEW.email));
            RETURN NEW;
        END $$;
        CREATE TRIGGER signups_welcome AFTER INSERT ON "{schema}".signups
            FOR EACH ROW EXECUTE FUNCTION "{schema}".welcome();
    """)
    await admin.execute(f"""INSERT INTO "{schema}".signups (email) VALUES ('a@example.com')""")
    (job,) = await client.list_jobs()
    assert (job.task, job.args, job.queue) == ("mail.send", ["a@example.com"], "emails")


# Continuations (after => ARRAY[...]): stored exactly as the client's.

# Columns that differ between two jobs enqueued a moment apart: kept as whether they are set.
_MOMENTS = ("id", "created_at", "run_at", "finished_at", "queue_entry")


async def _stored(admin: asyncpg.Connection, schema: str, job_id: int) -> dict[str, Any]:
    """The job's row, its job_parents rows and its queue row, with the columns that differ
    between two enqueues of the same job (its id, the times) reduced to whether they are
    set, and the error's time left out."""
    row = dict(await admin.fetchrow(f'SELECT * FROM "{schema}".jobs WHERE id = $1', job_id))
    for column in _MOMENTS:
        row[column] = row[column] is not None
    if row["error"] is not None:
        error = json.loads(row["error"])
        assert error.pop("at")
        row["error"] = error
    row["waits_on"] = await admin.fetch(
        f'SELECT parent_id FROM "{schema}".job_parents WHERE job_id = $1 ORDER BY 1', job_id
    )
    row["queue_rows"] = await admin.fetch(
        f"SELECT q.queue, q.priority, q.run_at = j.run_at AS due, q.id = j.queue_entry AS own"
        f' FROM "{schema}".queue AS q JOIN "{schema}".jobs AS j ON j.id = q.job_id'
        f" WHERE q.job_id = $1",
        job_id,
    )
    return row


def _seen(job: asyncjobs.Job[Any]) -> dict[str, Any]:
    """What client.get() shows of a job, but for its id and times."""
    shown = dataclasses.asdict(job)
    for name in ("id", "created_at", "run_at", "finished_at"):
        shown[name] = shown[name] is not None
    if shown["error"] is not None:
        shown["error"] = {k: v for k, v in shown["error"].items() if k != "at"}
    return shown


class _Heard:
    """The NOTIFYs of a schema's enqueue and done channels, up to a marker sent after."""

    def __init__(self, conn: asyncpg.Connection, schema: str) -> None:
        self.conn, self.schema = conn, schema
        self.heard: list[tuple[str, str]] = []
        self.marks = 0

    async def start(self) -> None:
        # The marker's own channel: the client and workers listen on the others. Any
        # channel's notifications come in commit order.
        for channel in ("enqueue", "done", "test_mark"):
            await self.conn.add_listener(
                f"{self.schema}.{channel}", lambda _c, _p, ch, payload: self.on(ch, payload)
            )

    def on(self, channel: str, payload: str) -> None:
        # A due time's epoch differs between two enqueues: whether there is one is kept.
        queue, at, _epoch = payload.partition("@")
        self.heard.append((channel.rpartition(".")[2], queue + at))

    async def since(self, admin: asyncpg.Connection) -> list[tuple[str, str]]:
        """What was heard since the last call (a marker NOTIFY, sent after, closes it)."""
        self.marks += 1
        mark = f"mark {self.marks}"
        await admin.execute("SELECT pg_notify($1, $2)", f"{self.schema}.test_mark", mark)
        with anyio.fail_after(10):
            while ("test_mark", mark) not in self.heard:
                await anyio.sleep(0.01)
        heard = self.heard[: self.heard.index(("test_mark", mark))]
        del self.heard[: len(heard) + 1]
        return heard


async def test_a_continuation_from_sql_waits_for_its_parent_then_runs_as_the_clients_does(
    app: asyncjobs.App,
    client: asyncjobs.Client,
    admin: asyncpg.Connection,
    pg_dsn: str,
    schema: str,
) -> None:
    release = anyio.Event()

    @app.task
    async def gate() -> str:
        await release.wait()
        return "open"

    @app.task(name="child", queue="after", priority=3, max_attempts=2, timeout=20)
    async def child(x: int) -> int:
        return x * 2

    listener = await asyncpg.connect(pg_dsn)
    heard = _Heard(listener, schema)
    await heard.start()
    try:
        async with app.worker(concurrency=4, queues=["default", "after"]):
            parent = await client.enqueue(gate)
            await until(client, parent, lambda j: j.state is asyncjobs.JobState.PROCESSING)
            await heard.since(admin)
            ours = await client.enqueue(child.options(after=[parent, parent]), 21)
            from_client = await heard.since(admin)
            theirs = await admin.fetchval(
                _sql(schema, "enqueue('child', args => '[21]', after => ARRAY[$1, $1]::bigint[])"),
                parent,
            )
            from_sql = await heard.since(admin)

            stored = await _stored(admin, schema, theirs)
            assert stored == await _stored(admin, schema, ours)
            assert (stored["state"], stored["parents"], stored["pending_parents"]) == (
                "awaiting",
                [parent],
                1,
            )
            assert (stored["on_parent_failure"], stored["queue_rows"]) == ("cancel", [])
            assert [r["parent_id"] for r in stored["waits_on"]] == [parent]
            assert from_sql == from_client == []
            assert _seen(await client.get(theirs)) == _seen(await client.get(ours))
            # The parent's row says it has children, as for the client's.
            assert await admin.fetchval(
                f'SELECT has_children FROM "{schema}".jobs WHERE id = $1', parent
            )

            release.set()
            assert await client.wait(theirs, timeout=30) == 42
            assert await client.wait(ours, timeout=30) == 42
    finally:
        await listener.close()
    done = await client.get(theirs)
    assert (done.state, done.queue, done.priority, done.attempt) == (
        asyncjobs.JobState.SUCCEEDED,
        "after",
        3,
        1,
    )
    assert _seen(done) | {"started_at": None, "worker_id": None} == _seen(
        await client.get(ours)
    ) | {"started_at": None, "worker_id": None}


async def test_a_continuation_of_finished_parents_is_queued_or_cancelled_as_the_clients_is(
    app: asyncjobs.App,
    client: asyncjobs.Client,
    admin: asyncpg.Connection,
    pg_dsn: str,
    schema: str,
) -> None:
    @app.task(max_attempts=1)
    async def outcome(ok: bool) -> None:
        if not ok:
            raise ValueError("no")

    @app.task(name="child")
    async def child() -> str:
        return "ran"

    good = await client.enqueue(outcome, True)
    bad = await client.enqueue(outcome, False)
    gone = await client.enqueue(outcome.options(delay=3600), True)
    waiting = await client.enqueue(outcome.options(delay=3600), True)
    await client.cancel(gone)
    async with app.worker():
        await client.wait(good, timeout=30)
        with pytest.raises(asyncjobs.JobFailed):
            await client.wait(bad, timeout=30)

    # (parents, on_parent_failure, delay, the state both enqueues store)
    cases: list[tuple[list[int], Literal["cancel", "run"], float | None, str]] = [
        ([good], "cancel", None, "queued"),
        ([good], "cancel", 60, "scheduled"),
        ([bad], "cancel", None, "cancelled"),
        ([bad], "run", None, "queued"),
        ([gone], "cancel", None, "cancelled"),
        ([bad, good], "cancel", None, "cancelled"),
        ([waiting, bad], "cancel", None, "cancelled"),
        ([waiting, bad], "run", None, "awaiting"),
        ([gone, bad, good], "run", 60, "scheduled"),
    ]
    listener = await asyncpg.connect(pg_dsn)
    heard = _Heard(listener, schema)
    await heard.start()
    runnable: list[int] = []
    cancelled: list[int] = []
    try:
        for parents, on_failure, delay, state in cases:
            await heard.since(admin)
            ours = await client.enqueue(
                child.options(after=parents, on_parent_failure=on_failure, delay=delay)
            )
            from_client = await heard.since(admin)
            theirs = await admin.fetchval(
                _sql(
                    schema,
                    "enqueue('child', after => $1::bigint[], on_parent_failure => $2, delay => $3)",
                ),
                parents,
                on_failure,
                delay,
            )
            from_sql = await heard.since(admin)
            case = (parents, on_failure, delay)
            stored = await _stored(admin, schema, theirs)
            assert stored == await _stored(admin, schema, ours), case
            assert stored["state"] == state, case
            assert from_sql == from_client, case
            assert _seen(await client.get(theirs)) == _seen(await client.get(ours)), case
            if state == "queued":
                runnable.append(theirs)
            if state == "cancelled":
                cancelled.append(theirs)
    finally:
        await listener.close()

    # The first parent that failed or was cancelled is named, in the statement's words.
    first, second, third, fourth = [await client.get(i) for i in cancelled]
    assert first.error is not None and first.error["type"] == "ParentNotSucceeded"
    assert first.error["message"] == f"parent job {bad} failed; this job was cancelled"
    assert second.error is not None
    assert second.error["message"] == f"parent job {gone} was cancelled; this job was cancelled"
    assert third.error is not None
    assert third.error["message"] == f"parent job {bad} failed; this job was cancelled"
    assert fourth.error is not None
    assert fourth.error["message"] == f"parent job {bad} failed; this job was cancelled"
    async with app.worker():
        for job_id in runnable:
            assert await client.wait(job_id, timeout=30) == "ran"
        for job_id in cancelled:
            with pytest.raises(asyncjobs.JobCancelled):
                await client.wait(job_id, timeout=30)


async def test_a_continuation_with_a_unique_key_as_the_client_has_it(
    app: asyncjobs.App, client: asyncjobs.Client, admin: asyncpg.Connection, schema: str
) -> None:
    @app.task(max_attempts=1)
    async def later() -> None:
        raise ValueError("no")

    async with app.worker():
        failed = await client.enqueue(later)
        with pytest.raises(asyncjobs.JobFailed):
            await client.wait(failed, timeout=30)
    parent = await client.enqueue(later.options(delay=3600))
    call = f"enqueue('{later.name}', after => ARRAY[$1::bigint], unique_key => $2"
    # An awaiting job is active: the same key returns it, whichever side enqueued it.
    waiting = await admin.fetchval(_sql(schema, call + ")"), parent, "k")
    assert (await client.get(waiting)).state is asyncjobs.JobState.AWAITING
    assert await admin.fetchval(_sql(schema, call + ")"), parent, "k") == waiting
    assert await client.enqueue(later.options(after=parent, unique_key="k")) == waiting
    mine = await client.enqueue(later.options(after=parent, unique_key="mine"))
    assert await admin.fetchval(_sql(schema, call + ")"), parent, "mine") == mine
    with pytest.raises(asyncpg.UniqueViolationError) as raised:
        await admin.fetchval(_sql(schema, call + ", on_duplicate => 'raise')"), parent, "k")
    assert raised.value.constraint_name == "asyncjobs_unique_key"
    # A job whose key is its own parent's: the parent is the active job with that key.
    keyed = await client.enqueue(later.options(unique_key="same", delay=3600))
    assert await admin.fetchval(_sql(schema, call + ")"), keyed, "same") == keyed
    # Cancelled at once: not active, so it takes no key, and each enqueue stores one.
    gone = await admin.fetchval(_sql(schema, call + ")"), failed, "k2")
    again = await admin.fetchval(_sql(schema, call + ")"), failed, "k2")
    assert gone != again
    assert (await client.get(gone)).state is asyncjobs.JobState.CANCELLED
    assert await client.enqueue(later.options(unique_key="k2", delay=3600)) not in (gone, again)
    count = await admin.fetchval(f'SELECT count(*) FROM "{schema}".job_parents')
    assert count == 2  # waiting and mine, on parent


async def test_a_continuation_locks_its_parents_as_the_clients_does(
    app: asyncjobs.App, client: asyncjobs.Client, admin: asyncpg.Connection, pg_dsn: str
) -> None:
    """Both ways: a parent cannot end while a transaction that enqueued its child from SQL
    is open (the child's job_parents row is seen by the parent's trigger), and an enqueue
    after a parent that is ending waits for that to commit and sees it ended."""

    @app.task
    async def quick() -> str:
        return "ok"

    schema = app.schema
    call = _sql(schema, f"enqueue('{quick.name}', after => ARRAY[$1::bigint])")
    async with app.worker():
        pass  # records the task's name
    parent = await client.enqueue(quick)
    conn = await asyncpg.connect(pg_dsn)
    try:
        tx = conn.transaction()
        await tx.start()
        child = await conn.fetchval(call, parent)
        async with app.worker():
            try:
                await anyio.sleep(0.5)
                assert not (await client.get(parent)).state.finished
                await tx.commit()
            finally:
                if conn.is_in_transaction():
                    await tx.rollback()
            assert await client.wait(child, timeout=30) == "ok"

        other = await client.enqueue(quick.options(delay=3600))
        async with conn.transaction():
            await conn.execute(f'SELECT "{schema}".cancel_job($1)', other)
            async with anyio.create_task_group() as tg:
                late: list[int] = []

                async def enqueue_child() -> None:
                    late.append(await admin.fetchval(call, other))

                tg.start_soon(enqueue_child)
                await anyio.sleep(0.3)
                assert not late  # waiting for the cancelling transaction
                await conn.execute("COMMIT")
                await conn.execute("BEGIN")
        assert (await client.get(late[0])).state is asyncjobs.JobState.CANCELLED
    finally:
        await conn.close()


async def test_an_unknown_parent_is_refused_as_the_client_refuses_it_and_stores_nothing(
    known: None, admin: asyncpg.Connection, schema: str
) -> None:
    real = await admin.fetchval(_sql(schema, "enqueue('quick', args => '[1]')"))
    with pytest.raises(asyncpg.ForeignKeyViolationError) as raised:
        await admin.fetchval(
            _sql(schema, "enqueue('quick', after => ARRAY[$1, 999999, 999998, 999999]::bigint[])"),
            real,
        )
    assert raised.value.message == (
        "cannot enqueue after job 999998, 999999: no such job (it never existed or was "
        "deleted); nothing was enqueued"
    )
    assert raised.value.constraint_name == "asyncjobs_unknown_parent"
    # The client's reading of the statement's refusal reads this one the same.
    error = refused(raised.value)
    assert isinstance(error, asyncjobs.JobNotFound)
    assert str(error) == raised.value.message
    assert await admin.fetch(f'SELECT id, has_children FROM "{schema}".jobs') == [(real, False)]


async def test_the_old_call_forms_still_work_and_after_goes_by_name_or_position(
    known: None, admin: asyncpg.Connection, schema: str, client: asyncjobs.Client
) -> None:
    # Every parameter of before, by position: they kept their places.
    old = await admin.fetchval(
        _sql(
            schema,
            "enqueue('quick', '[1]', '{}', 'default', 0, 3, NULL, NULL, NULL, 'pos', "
            "'existing', false)",
        )
    )
    assert (await client.get(old)).state is asyncjobs.JobState.QUEUED
    assert await admin.fetchval(_sql(schema, "enqueue('quick', '[2]')")) > old
    named = await admin.fetchval(_sql(schema, f"enqueue('quick', after => ARRAY[{old}])"))
    positional = await admin.fetchval(
        _sql(
            schema,
            "enqueue('quick', '[3]', '{}', NULL, NULL, NULL, NULL, NULL, NULL, NULL, "
            f"'existing', false, ARRAY[{old}], 'run')",
        )
    )
    assert (await client.get(named)).parents == (await client.get(positional)).parents == [old]
    rows = await admin.fetch(
        f'SELECT on_parent_failure FROM "{schema}".jobs WHERE id = ANY($1) ORDER BY id',
        [old, named, positional],
    )
    assert [r[0] for r in rows] == [None, "cancel", "run"]
