"""The connection pool: reuse, bounds, and what happens to a connection after an error or a
cancellation, against real PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import asyncpg
import pytest

import asyncjobs
from asyncjobs.db.pool import Pool, PoolClosed, open_pool

PID = "SELECT pg_backend_pid()"


@pytest.fixture
async def pool(pg_dsn: str) -> AsyncIterator[Pool]:
    pool = await open_pool(pg_dsn, min_size=1, max_size=2)
    yield pool
    await pool.close()


async def _gone(admin: asyncpg.Connection, pid: int) -> bool:
    with anyio.move_on_after(5):
        # Inside a transaction the activity view is a snapshot, taken once unless cleared.
        while await admin.fetchval("SELECT pg_stat_clear_snapshot()") or await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid
        ):
            await anyio.sleep(0.02)
        return True
    return False


async def test_statements_reuse_an_idle_connection(pool: Pool) -> None:
    first = await pool.fetchval(PID)
    assert await pool.fetchval(PID) == first
    assert (await pool.fetchrow(PID))[0] == first  # type: ignore[index]
    assert (await pool.fetch(PID))[0][0] == first
    assert await pool.execute("SELECT 1") == "SELECT 1"
    async with pool.acquire() as conn:
        assert await conn.fetchval(PID) == first
    assert pool.get_size() == 1 and pool.get_idle_size() == 1


async def test_a_server_error_keeps_the_connection(pool: Pool) -> None:
    first = await pool.fetchval(PID)
    with pytest.raises(asyncpg.DivisionByZeroError):
        await pool.fetchval("SELECT 1 / 0")
    with pytest.raises(asyncpg.UndefinedTableError):
        async with pool.acquire() as conn:
            await conn.execute("SELECT * FROM no_such_table")
    assert await pool.fetchval(PID) == first


async def test_a_cancelled_statement_is_cancelled_and_its_connection_closed(
    pool: Pool, admin: asyncpg.Connection
) -> None:
    first = await pool.fetchval(PID)
    with anyio.move_on_after(0.3):
        await pool.fetchval("SELECT pg_sleep(30)")
    # The cancel request reached the server (the backend did not sleep on), and the
    # connection is closed rather than given to the next statement.
    assert await _gone(admin, first)
    assert await pool.fetchval(PID) != first
    assert pool.get_size() == 1


async def test_a_cancelled_enqueue_leaves_a_working_client(
    client: asyncjobs.Client, admin: asyncpg.Connection, schema: str
) -> None:
    client.allow_unknown_tasks = True
    await client.enqueue("some.task", 1)
    before = await client.pool.fetchval(PID)
    async with admin.transaction():
        # The enqueue waits for this lock, and is cancelled while it waits.
        await admin.execute(f'LOCK TABLE "{schema}".jobs IN EXCLUSIVE MODE')
        with anyio.move_on_after(0.3) as scope:
            await client.enqueue("some.task", 2)
        assert scope.cancelled_caught
        # The lock is still held: only a cancel request ends the statement now (a closed
        # socket is not noticed by a backend waiting for a lock).
        assert await _gone(admin, before)
    job_id = await client.enqueue("some.task", 3)
    job = await client.get(job_id)
    assert job.args == [3]
    args = await admin.fetch(f'SELECT args FROM "{schema}".jobs ORDER BY id')
    assert [r["args"] for r in args] == ["[1]", "[3]"]


async def test_a_connection_given_back_in_a_transaction_is_rolled_back_and_closed(
    pool: Pool, admin: asyncpg.Connection
) -> None:
    await pool.execute("CREATE TABLE IF NOT EXISTS pool_left_open (n int)")
    try:
        async with pool.acquire() as conn:
            first = await conn.fetchval(PID)
            await conn.execute("BEGIN")
            await conn.execute("INSERT INTO pool_left_open VALUES (1)")
        assert await _gone(admin, first)
        assert await pool.fetchval("SELECT count(*) FROM pool_left_open") == 0
    finally:
        await pool.execute("DROP TABLE pool_left_open")


async def test_an_error_in_a_block_retires_its_connection(
    pool: Pool, admin: asyncpg.Connection
) -> None:
    first = await pool.fetchval(PID)
    with pytest.raises(RuntimeError):
        async with pool.acquire():
            raise RuntimeError("the caller's own failure")
    assert await _gone(admin, first)
    assert await pool.fetchval(PID) != first


async def test_a_killed_idle_connection_is_replaced(pool: Pool, admin: asyncpg.Connection) -> None:
    first = await pool.fetchval(PID)
    await admin.execute("SELECT pg_terminate_backend($1)", first)
    assert await _gone(admin, first)
    await anyio.sleep(0.1)  # the client side notices the closed socket
    assert await pool.fetchval(PID) != first


async def test_size_is_bounded_and_waiters_are_served(pool: Pool) -> None:
    pids: list[int] = []
    most = 0

    async def use() -> None:
        nonlocal most
        pids.append(await pool.fetchval("SELECT pg_backend_pid() FROM pg_sleep(0.1)"))
        most = max(most, pool.get_size())

    async with anyio.create_task_group() as users:
        for _ in range(6):
            users.start_soon(use)
    assert len(pids) == 6
    assert len(set(pids)) == 2 and most == 2


async def test_a_cancelled_waiter_takes_nothing(pg_dsn: str) -> None:
    pool = await open_pool(pg_dsn, min_size=1, max_size=1)
    try:
        async with pool.acquire() as held:
            with anyio.move_on_after(0.1) as scope:
                await pool.fetchval("SELECT 1")
            assert scope.cancelled_caught
            pid = await held.fetchval(PID)
        assert await pool.fetchval(PID) == pid
        assert pool.get_size() == 1 and pool.get_idle_size() == 1
    finally:
        await pool.close()


async def test_closed_pool_refuses_and_closes(pg_dsn: str, admin: asyncpg.Connection) -> None:
    pool = await open_pool(pg_dsn, min_size=2, max_size=2)
    refused: list[BaseException] = []

    async def wait() -> None:
        try:
            await pool.fetchval("SELECT 1")
        except PoolClosed as exc:
            refused.append(exc)

    async with pool.acquire() as one, pool.acquire() as two:
        pids = [await one.fetchval(PID), await two.fetchval(PID)]
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            await anyio.sleep(0.1)
            await pool.close()
        assert refused  # the waiter, when the pool closed
    # Both connections were in use; they are closed as they are given back.
    for pid in pids:
        assert await _gone(admin, pid)
    with anyio.fail_after(5):
        while pool.get_size():
            await anyio.sleep(0.01)
    with pytest.raises(PoolClosed):
        await pool.fetchval("SELECT 1")


async def test_bad_dsn_fails_clearly() -> None:
    with pytest.raises(asyncjobs.ConnectionFailed, match="cannot connect"):
        await open_pool("postgresql://nobody@127.0.0.1:1/none", min_size=1)
