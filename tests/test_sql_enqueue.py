"""`SELECT <schema>.enqueue('task', args => ...)`: a job from plain SQL (any language, tool
or trigger), checked as the client checks it, in the caller's transaction with its NOTIFY."""

from __future__ import annotations

import asyncpg
import pytest

import asyncjobs
from tests.helpers import Spawn, workers_up


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
