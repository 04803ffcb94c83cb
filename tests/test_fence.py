"""A job's own fence: <schema>.attempt_is_current(job, entry, attempt) and
current_job().check_fence(conn). A write guarded by it, in the writer's transaction, and a
cancel/requeue/delete of that attempt never both commit: real sessions, real row locks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import asyncpg
import pytest

import asyncjobs
from tests.integrations import WAYS, psycopg_async, sqlalchemy_engine


async def _until(
    client: asyncjobs.Client, job_id: int, check: Any, timeout: float = 15
) -> asyncjobs.Job:
    with anyio.fail_after(timeout):
        while True:
            job = await client.get(job_id)
            if check(job):
                return job
            await anyio.sleep(0.01)


async def _waiting_for_a_lock(admin: asyncpg.Connection, pid: int) -> None:
    """Until backend `pid` waits for a lock (a row lock: the fence's, or the requeue's)."""
    with anyio.fail_after(10):
        while (
            await admin.fetchval("SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1", pid)
            != "Lock"
        ):
            await anyio.sleep(0.01)


@pytest.fixture
async def payments(admin: asyncpg.Connection, schema: str, client: asyncjobs.Client) -> str:
    """A table of the application's: one row per payment, naming the attempt that made it."""
    await admin.execute(
        f'CREATE TABLE "{schema}".payments (job_id bigint, entry bigint, attempt integer,'
        " amount integer, UNIQUE (job_id, entry, attempt))"
    )
    return f'"{schema}".payments'


@pytest.fixture
async def sessions(pg_dsn: str) -> AsyncIterator[list[asyncpg.Connection]]:
    conns = [await asyncpg.connect(pg_dsn) for _ in range(2)]
    yield conns
    for conn in conns:
        await conn.close()


async def test_a_fenced_write_and_a_requeue_never_both_commit_for_one_attempt(
    app: asyncjobs.App,
    client: asyncjobs.Client,
    admin: asyncpg.Connection,
    sessions: list[asyncpg.Connection],
    payments: str,
) -> None:
    @app.task
    async def waits() -> None:
        await anyio.sleep(60)

    schema = app.schema
    pay = (
        f"INSERT INTO {payments} SELECT $1, $2, $3, 100"
        f' WHERE "{schema}".attempt_is_current($1, $2, $3) RETURNING amount'
    )
    payer, requeuer = sessions
    job_id = await client.enqueue(waits)
    async with app.worker():
        job = await _until(client, job_id, lambda j: j.state is asyncjobs.JobState.PROCESSING)
        fence = await admin.fetchrow(
            f'SELECT id, queue_entry, attempt FROM "{schema}".jobs WHERE id = $1', job_id
        )
        assert fence is not None and fence["attempt"] == job.attempt

        # 1. The fence first: the requeue waits for the payer's transaction.
        requeued = anyio.Event()

        async def requeue() -> None:
            await requeuer.fetchval(f'SELECT "{schema}".requeue_job($1)', job_id)
            requeued.set()

        async with anyio.create_task_group() as tg:
            payment = payer.transaction()
            await payment.start()
            assert await payer.fetchval(pay, *fence) == 100
            tg.start_soon(requeue)
            await _waiting_for_a_lock(admin, requeuer.get_server_pid())
            await anyio.sleep(0.3)
            assert not requeued.is_set()
            await payment.commit()  # then the requeue goes on
        assert requeued.is_set()
        # The old attempt can pay no more.
        async with payer.transaction():
            assert await payer.fetchval(pay, *fence) is None

        # 2. The requeue first (not committed yet): the fence waits for it, then refuses.
        second = await _until(
            client,
            job_id,
            lambda j: j.state is asyncjobs.JobState.PROCESSING and j.started_at is not None,
        )
        fence2 = await admin.fetchrow(
            f'SELECT id, queue_entry, attempt FROM "{schema}".jobs WHERE id = $1', job_id
        )
        assert fence2 is not None and fence2["queue_entry"] != fence["queue_entry"]
        assert second.state is asyncjobs.JobState.PROCESSING
        paid: list[Any] = []

        async def try_to_pay() -> None:
            async with payer.transaction():
                paid.append(await payer.fetchval(pay, *fence2))

        async with anyio.create_task_group() as tg:
            requeue_tx = requeuer.transaction()
            await requeue_tx.start()
            await requeuer.fetchval(f'SELECT "{schema}".requeue_job($1)', job_id)
            tg.start_soon(try_to_pay)
            await _waiting_for_a_lock(admin, payer.get_server_pid())
            await anyio.sleep(0.3)
            assert paid == []
            await requeue_tx.commit()  # then the fence answers: not current
        assert paid == [None]
        await client.cancel(job_id)
    rows = await admin.fetch(f"SELECT job_id, entry, attempt FROM {payments}")
    assert [tuple(r) for r in rows] == [tuple(fence)]


async def test_check_fence_in_the_jobs_own_transaction_holds_off_a_requeue(
    app: asyncjobs.App,
    client: asyncjobs.Client,
    admin: asyncpg.Connection,
    pg_dsn: str,
    payments: str,
) -> None:
    in_transaction = anyio.Event()
    release = anyio.Event()
    after_requeue: list[BaseException] = []

    @app.task
    async def charge(amount: int) -> str:
        job = asyncjobs.current_job()
        conn = await asyncpg.connect(pg_dsn)
        try:
            with pytest.raises(asyncjobs.ConfigurationError, match="inside `async with conn"):
                await job.check_fence(conn)  # outside a transaction it guards nothing
            # Shielded: the requeue commits as soon as this commits, and its message may
            # reach the worker before this COMMIT's answer does (seen once in CI); the
            # cancellation then waits for the block below, which must run.
            with anyio.CancelScope(shield=True):
                async with conn.transaction():
                    await job.check_fence(conn)
                    await conn.execute(
                        f"INSERT INTO {payments} VALUES ($1, $2, $3, $4)", *job.fence, amount
                    )
                    in_transaction.set()
                    await release.wait()
            if job.attempt == 1 and len(after_requeue) == 0:
                # Interrupted by the requeue once this returns to the loop; shielded, the
                # attempt tries again and is refused.
                with anyio.CancelScope(shield=True):
                    with anyio.fail_after(10):
                        while not job.token.cancelled:
                            await anyio.sleep(0.01)
                    try:
                        async with conn.transaction():
                            await job.check_fence(conn)
                            await conn.execute(
                                f"INSERT INTO {payments} VALUES ($1, $2, $3, $4)",
                                *job.fence,
                                amount,
                            )
                    except asyncjobs.AttemptNotCurrent as exc:
                        after_requeue.append(exc)
            return "charged"
        finally:
            await conn.close()

    job_id = await client.enqueue(charge, 42)
    async with app.worker(), anyio.create_task_group() as tg:
        with anyio.fail_after(10):
            await in_transaction.wait()
        first = await admin.fetchrow(
            f'SELECT queue_entry, attempt FROM "{app.schema}".jobs WHERE id = $1', job_id
        )
        requeued = anyio.Event()

        async def requeue() -> None:
            await client.requeue(job_id)
            requeued.set()

        tg.start_soon(requeue)
        await anyio.sleep(0.5)
        assert not requeued.is_set()  # waits for the job's transaction
        release.set()
        with anyio.fail_after(10):
            await requeued.wait()
        await _until(client, job_id, lambda j: j.state is asyncjobs.JobState.SUCCEEDED)
    assert len(after_requeue) == 1
    assert after_requeue[0].reason is asyncjobs.CancelReason.REQUEUED  # type: ignore[attr-defined]
    rows = await admin.fetch(f"SELECT entry, attempt, amount FROM {payments} ORDER BY entry")
    assert first is not None
    # Exactly one payment per attempt: the first attempt's, made before the requeue
    # committed, and the run after the requeue (a new attempt: entry and count start over).
    assert len(rows) == 2 and rows[1]["entry"] != first["queue_entry"]
    assert tuple(rows[0]) == (first["queue_entry"], first["attempt"], 42)


@pytest.mark.parametrize("way", sorted(WAYS))
async def test_check_fence_takes_the_connections_enqueue_tx_takes(
    way: str,
    app: asyncjobs.App,
    client: asyncjobs.Client,
    admin: asyncpg.Connection,
    pg_dsn: str,
) -> None:
    """SQLAlchemy, psycopg and Django as asyncpg: the check runs in the caller's transaction
    (its lock on the job's row lasts until that ends), and says when the attempt is no longer
    current."""
    in_transaction = WAYS[way]
    checked = anyio.Event()
    seen: list[object] = []

    async def locks_on_jobs() -> int:
        n: int = await admin.fetchval(
            "SELECT count(*) FROM pg_locks WHERE mode = 'RowShareLock' AND relation = "
            "to_regclass($1) AND pid <> pg_backend_pid()",
            f'"{app.schema}".jobs',
        )
        return n

    @app.task
    async def pay() -> None:
        job = asyncjobs.current_job()

        async def fenced(conn: Any) -> None:
            await job.check_fence(conn)
            # Still held after the statement: the transaction holds it until it ends.
            seen.append(await locks_on_jobs())

        await in_transaction(pg_dsn, fenced)
        checked.set()
        with anyio.CancelScope(shield=True):
            with anyio.fail_after(10):
                while not job.token.cancelled:
                    await anyio.sleep(0.01)
            try:
                await in_transaction(pg_dsn, fenced)
            except asyncjobs.AttemptNotCurrent as exc:
                seen.append(exc.reason)  # type: ignore[attr-defined]

    job_id = await client.enqueue(pay)
    async with app.worker():
        with anyio.fail_after(20):
            await checked.wait()
        await client.cancel(job_id)
        await _until(client, job_id, lambda j: j.state is asyncjobs.JobState.CANCELLED)
        with anyio.fail_after(20):
            while len(seen) < 2:
                await anyio.sleep(0.01)
    assert seen == [1, asyncjobs.CancelReason.CANCELLED]


async def test_check_fence_outside_a_transaction_is_refused_on_every_library(
    app: asyncjobs.App, client: asyncjobs.Client, pg_dsn: str
) -> None:
    refused: list[str] = []

    @app.task
    async def pay() -> None:
        job = asyncjobs.current_job()
        conn = await psycopg_async(pg_dsn, autocommit=True)
        try:
            with pytest.raises(asyncjobs.ConfigurationError, match="autocommit") as raised:
                await job.check_fence(conn)
            refused.append(str(raised.value))
        finally:
            await conn.close()
        engine = sqlalchemy_engine(pg_dsn)
        try:
            async with engine.connect() as saconn:
                auto = await saconn.execution_options(isolation_level="AUTOCOMMIT")
                with pytest.raises(asyncjobs.ConfigurationError, match="AUTOCOMMIT") as raised:
                    await job.check_fence(auto)
                refused.append(str(raised.value))
        finally:
            await engine.dispose()
        with pytest.raises(asyncjobs.UnsupportedConnection, match="cannot check the fence on"):
            await job.check_fence(object())  # type: ignore[arg-type]

    job_id = await client.enqueue(pay)
    async with app.worker():
        await _until(client, job_id, lambda j: j.state.finished)
    assert (await client.get(job_id)).state is asyncjobs.JobState.SUCCEEDED
    assert len(refused) == 2
    assert all("guard nothing: check the fence" in message for message in refused)
