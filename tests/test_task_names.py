"""Task names are checked: workers record their app's task names, and an enqueue by a name
no worker has ever had fails at once, naming close matches, unless asked to go ahead."""

from __future__ import annotations

import asyncpg
import pytest

import asyncjobs
from asyncjobs.client.task_names import unknown_task
from tests.helpers import Spawn, run_cli, workers_up


@pytest.fixture
def worker_app(pg_dsn: str, schema: str) -> asyncjobs.App:
    """The workers' app: the tasks' code lives here, not in the producer's."""
    app = asyncjobs.App(pg_dsn, schema=schema)

    @app.task(queue="emails", max_attempts=7, priority=2, timeout=30)
    async def send_email(to: str) -> str:
        return to

    @app.task(name="billing.charge")
    async def charge(cents: int) -> int:
        return cents

    return app


async def _start_and_stop(app: asyncjobs.App) -> None:
    async with app.worker(concurrency=1):
        pass


async def test_a_worker_records_its_tasks_and_their_options(
    worker_app: asyncjobs.App, admin: asyncpg.Connection, schema: str
) -> None:
    await _start_and_stop(worker_app)
    rows = await admin.fetch(
        f'SELECT name, queue, priority, max_attempts, timeout FROM "{schema}".task_names '
        "ORDER BY name"
    )
    assert [tuple(r)[1:] for r in rows] == [("default", 0, 3, None), ("emails", 2, 7, 30.0)]
    assert rows[0]["name"] == "billing.charge"
    # module.function, unless name= is given
    assert rows[1]["name"].endswith("test_task_names.worker_app.<locals>.send_email")


async def test_a_producer_enqueues_names_its_workers_have_and_is_told_of_a_typo(
    worker_app: asyncjobs.App, pg_dsn: str, schema: str
) -> None:
    await _start_and_stop(worker_app)  # gone now: its names stay known
    producer = asyncjobs.App(pg_dsn, schema=schema)
    async with producer.client() as client:
        job = await client.get(await client.enqueue("billing.charge", 5))
        assert job.task == "billing.charge"
        with pytest.raises(asyncjobs.UnknownTaskError) as raised:
            await client.enqueue("billing.charg", 5)
        message = str(raised.value)
        assert "'billing.charg'" in message and "did you mean 'billing.charge'?" in message
        assert "module.function" in message and "allow_unknown_tasks=True" in message
        # The module left out: matched by the function's name.
        with pytest.raises(asyncjobs.UnknownTaskError, match="send_email'\\?"):
            await client.enqueue("send_email", "a@example.com")
        with pytest.raises(asyncjobs.UnknownTaskError):
            await client.enqueue_tx(object(), "nothing.like.it")  # type: ignore[call-overload]
    assert len(await _jobs(pg_dsn, schema)) == 1


async def test_a_job_enqueued_by_name_gets_the_options_its_workers_recorded(
    worker_app: asyncjobs.App, pg_dsn: str, schema: str, env: dict[str, str]
) -> None:
    """A producer without the task's code: the job goes to the task's queue (where its
    workers look), with its attempts, priority and timeout, whichever way it is enqueued."""
    await _start_and_stop(worker_app)
    name = next(n for n in worker_app.tasks if n.endswith("send_email"))
    producer = asyncjobs.App(pg_dsn, schema=schema)
    async with producer.client() as client:
        ids = [await client.enqueue(name, "a@example.com")]
        conn = await asyncpg.connect(pg_dsn)
        try:
            async with conn.transaction():
                ids.append(await client.enqueue_tx(conn, name, "b@example.com"))
        finally:
            await conn.close()
        ids += await client.enqueue_many([await client.call_of(name, "c@example.com")])
        recorded = await client.task_options(name)
        assert recorded is not None and recorded.queue == "emails"
        assert await client.task_options("billing.refund") is None
    with producer.sync_client() as jobs:
        ids.append(jobs.enqueue(name, "d@example.com"))
    by_cli = await run_cli(env, "enqueue", name, '["e@example.com"]')
    assert by_cli.returncode == 0, by_cli.stderr
    ids.append(int(by_cli.stdout))
    # The command line's own options come first.
    told = await run_cli(env, "enqueue", name, '["f@example.com"]', "--queue", "urgent")
    assert told.returncode == 0, told.stderr

    conn = await asyncpg.connect(pg_dsn)
    try:
        rows = await conn.fetch(
            f'SELECT id, queue, priority, max_attempts, timeout FROM "{schema}".jobs ORDER BY id'
        )
    finally:
        await conn.close()
    options = {row["id"]: tuple(row)[1:] for row in rows}
    assert [options[i] for i in ids] == [("emails", 2, 7, 30.0)] * 5
    assert options[int(told.stdout)] == ("urgent", 2, 7, 30.0)

    # And the task's workers, which serve only its queue, run them.
    async with worker_app.client() as client, worker_app.worker(queues=["emails"]):
        results = [await client.wait(i, timeout=30) for i in ids]
    assert results == [
        "a@example.com",
        "b@example.com",
        "c@example.com",
        "d@example.com",
        "e@example.com",
    ]


async def test_allow_unknown_tasks_enqueues_a_name_no_worker_had_yet(
    pg_dsn: str, schema: str
) -> None:
    producer = asyncjobs.App(pg_dsn, schema=schema)
    async with producer.client() as client:
        with pytest.raises(asyncjobs.UnknownTaskError, match="no worker has run on it yet"):
            await client.enqueue("billing.charge", 5)
    async with producer.client(allow_unknown_tasks=True) as client:
        job_id = await client.enqueue("billing.charge", 5)
        assert (await client.get(job_id)).state is asyncjobs.JobState.QUEUED
    with pytest.raises(asyncjobs.ConfigurationError, match="allow_unknown_tasks"):
        producer.client(allow_unknown_tasks="yes")  # type: ignore[arg-type]


async def test_a_task_object_or_the_apps_own_name_needs_no_worker(
    app: asyncjobs.App, client: asyncjobs.Client
) -> None:
    @app.task(name="local.only")
    async def local() -> None: ...

    await client.enqueue(local)
    await client.enqueue("local.only")
    await client.check_task_name("local.only")
    assert len(await client.list_jobs()) == 2


async def test_known_names_are_cached_and_read_again_on_a_miss(
    worker_app: asyncjobs.App, pg_dsn: str, schema: str, admin: asyncpg.Connection
) -> None:
    producer = asyncjobs.App(pg_dsn, schema=schema)
    async with producer.client() as client:
        with pytest.raises(asyncjobs.UnknownTaskError):
            await client.enqueue("billing.charge", 1)
        await _start_and_stop(worker_app)
        await client.enqueue("billing.charge", 1)  # a miss reads the names again
        # Known now: the check asks nothing of the database (the table could be empty).
        await admin.execute(f'DELETE FROM "{schema}".task_names')
        await client.enqueue("billing.charge", 2)
        with pytest.raises(asyncjobs.UnknownTaskError):
            await client.enqueue("billing.refund", 1)


async def test_the_cli_checks_the_name_unless_allowed(
    env: dict[str, str], client: asyncjobs.Client, spawn_worker: Spawn
) -> None:
    refused = await run_cli(env, "enqueue", "quik", "[1]")
    assert refused.returncode == 1
    assert "no worker" in refused.stderr and "--allow-unknown-task" in refused.stderr

    spawn_worker()  # tests.worker_app, whose task 'quick' becomes known
    await workers_up(client, 1)
    typo = await run_cli(env, "enqueue", "quik", "[1]")
    assert typo.returncode == 1 and "did you mean 'quick'?" in typo.stderr
    done = await run_cli(env, "enqueue", "quick", "[4]")
    assert done.returncode == 0, done.stderr
    assert await client.wait(int(done.stdout), timeout=30) == 4

    anyway = await run_cli(env, "enqueue", "quik", "[1]", "--allow-unknown-task")
    assert anyway.returncode == 0, anyway.stderr
    assert (await client.get(int(anyway.stdout))).task == "quik"


@pytest.mark.parametrize(
    ("name", "suggested"),
    [
        ("myproject.tasks.send_emial", ["myproject.tasks.send_email"]),
        ("myproject.tasks.sendmail", ["myproject.tasks.send_email"]),
        ("myproject.task.send_email", ["myproject.tasks.send_email"]),  # the module
        ("send_email", ["myproject.tasks.send_email"]),  # the module left out
        ("myproject.tasks.Sync_User", ["myproject.tasks.sync_user"]),
        # A shared module path alone makes no name close.
        ("myproject.tasks.nothing_like_it", []),
        ("myproject.tasks.ad", []),
    ],
)
def test_close_matches_are_judged_by_the_function_name(name: str, suggested: list[str]) -> None:
    known = [
        f"myproject.tasks.{f}"
        for f in ("send_email", "charge_card", "sync_user", "resize_image", "purge_thumbnails")
    ]
    message = str(unknown_task(name, known, "asyncjobs"))
    if suggested:
        assert f"did you mean {' or '.join(map(repr, suggested))}? Task names" in message
    else:
        assert "did you mean" not in message
        assert f"named {name!r} (known: 'myproject.tasks.charge_card', " in message


async def _jobs(pg_dsn: str, schema: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(pg_dsn)
    try:
        return await conn.fetch(f'SELECT id, task FROM "{schema}".jobs')
    finally:
        await conn.close()
