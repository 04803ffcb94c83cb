"""Enqueueing in the caller's own transaction, on each kind of connection `enqueue_tx`
takes: asyncpg, SQLAlchemy (AsyncConnection, AsyncSession), psycopg 3 (async and sync) and
Django. A rollback leaves no job and wakes nobody; a commit stores the job, wakes the
workers then (not before), and a real worker runs it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

import asyncjobs
from tests.helpers import Spawn, workers_up
from tests.integrations import (
    WAYS,
    configure_django,
    psycopg_async,
    psycopg_sync,
    sqlalchemy_engine,
)
from tests.worker_app import quick


class _Rollback(Exception):
    """Raised in a transaction to roll it back."""


async def _count(admin: asyncpg.Connection, schema: str) -> int:
    n: int = await admin.fetchval(f'SELECT count(*) FROM "{schema}".jobs')
    return n


@pytest.fixture(params=sorted(WAYS))
def way(request: pytest.FixtureRequest) -> Callable[..., Awaitable[None]]:
    return WAYS[request.param]


async def test_a_rollback_leaves_no_job_and_wakes_nobody(
    way: Callable[..., Awaitable[None]],
    client: asyncjobs.Client,
    pg_dsn: str,
    admin: asyncpg.Connection,
    schema: str,
) -> None:
    heard: list[str] = []
    await admin.add_listener(f"{schema}.enqueue", lambda *a: heard.append(a[-1]))

    async def body(conn: Any) -> None:
        await client.enqueue_tx(conn, quick, 1)
        await client.enqueue_many_tx(conn, [quick.call(2), quick.call(3)])
        raise _Rollback

    with pytest.raises(_Rollback):
        await way(pg_dsn, body)
    await anyio.sleep(0.2)
    assert await _count(admin, schema) == 0
    assert heard == []


async def test_a_commit_stores_the_jobs_and_wakes_workers_at_commit_only(
    way: Callable[..., Awaitable[None]],
    client: asyncjobs.Client,
    pg_dsn: str,
    admin: asyncpg.Connection,
    schema: str,
) -> None:
    heard: list[str] = []
    await admin.add_listener(f"{schema}.enqueue", lambda *a: heard.append(a[-1]))
    ids: list[int] = []

    async def body(conn: Any) -> None:
        ids.append(await client.enqueue_tx(conn, quick, 1))
        ids.extend(await client.enqueue_many_tx(conn, [quick.call(2), quick.call(3)]))
        await anyio.sleep(0.2)
        # Neither stored for others nor announced before the commit.
        assert await _count(admin, schema) == 0
        assert heard == []

    await way(pg_dsn, body)
    assert ids == sorted(ids) and len(set(ids)) == 3
    assert [(await client.get(i)).args for i in ids] == [[1], [2], [3]]
    with anyio.fail_after(10):
        while not heard:
            await anyio.sleep(0.01)
    assert heard[0] == "default"


async def test_committed_jobs_run_on_a_real_worker(
    client: asyncjobs.Client, pg_dsn: str, spawn_worker: Spawn
) -> None:
    ids: dict[str, int] = {}
    for n, (name, way) in enumerate(sorted(WAYS.items())):

        async def body(conn: Any, name: str = name, n: int = n) -> None:
            ids[name] = await client.enqueue_tx(conn, quick, n)

        await way(pg_dsn, body)
    spawn_worker()
    await workers_up(client, 1)
    for n, name in enumerate(sorted(WAYS)):
        assert await client.wait(ids[name], timeout=30) == n, name


# -- errors ------------------------------------------------------------------------------


async def test_a_duplicate_or_a_missing_parent_is_the_clients_error_on_every_library(
    way: Callable[..., Awaitable[None]], client: asyncjobs.Client, pg_dsn: str
) -> None:
    first = await client.enqueue(quick.options(unique_key="k"), 1)

    async def duplicate(conn: Any) -> None:
        assert await client.enqueue_tx(conn, quick.options(unique_key="k"), 2) == first
        await client.enqueue_tx(conn, quick.options(unique_key="k", on_duplicate="raise"), 2)

    with pytest.raises(asyncjobs.DuplicateJob) as raised:
        await way(pg_dsn, duplicate)
    assert raised.value.job_id == first

    async def orphan(conn: Any) -> None:
        await client.enqueue_tx(conn, quick.options(after=999_999), 1)

    with pytest.raises(asyncjobs.JobNotFound, match="999999"):
        await way(pg_dsn, orphan)


async def test_an_unsupported_object_says_what_is_accepted(client: asyncjobs.Client) -> None:
    for wrong in (object(), "postgresql://localhost/db", None):
        with pytest.raises(asyncjobs.UnsupportedConnection) as raised:
            await client.enqueue_tx(wrong, quick, 1)  # type: ignore[call-overload]
        message = str(raised.value)
        for name in ("asyncpg", "SQLAlchemy", "psycopg", "Django"):
            assert name in message
        with pytest.raises(asyncjobs.UnsupportedConnection):
            await client.enqueue_many_tx(wrong, [])  # type: ignore[arg-type]


async def test_a_connection_outside_a_transaction_is_refused(
    client: asyncjobs.Client, pg_dsn: str, admin: asyncpg.Connection, schema: str
) -> None:
    conn = await asyncpg.connect(pg_dsn)
    try:
        with pytest.raises(asyncjobs.NotInTransaction, match=r"conn\.transaction\(\)"):
            await client.enqueue_tx(conn, quick, 1)
    finally:
        await conn.close()

    aconn = await psycopg_async(pg_dsn, autocommit=True)
    try:
        with pytest.raises(asyncjobs.NotInTransaction, match="autocommit"):
            await client.enqueue_tx(aconn, quick, 1)
        async with aconn.transaction():  # inside one, the same connection works
            await client.enqueue_tx(aconn, quick, 1)
    finally:
        await aconn.close()

    sconn = psycopg_sync(pg_dsn, autocommit=True)
    try:
        with pytest.raises(asyncjobs.NotInTransaction, match="autocommit"):
            await client.enqueue_tx(sconn, quick, 1)
    finally:
        sconn.close()

    engine = sqlalchemy_engine(pg_dsn)
    try:
        async with engine.connect() as saconn:
            auto = await saconn.execution_options(isolation_level="AUTOCOMMIT")
            with pytest.raises(asyncjobs.NotInTransaction, match="AUTOCOMMIT"):
                await client.enqueue_tx(auto, quick, 1)
    finally:
        await engine.dispose()

    configure_django(pg_dsn)

    def django_outside_atomic() -> None:
        from django.db import connection, transaction

        try:
            with pytest.raises(asyncjobs.NotInTransaction, match=r"transaction\.atomic\(\)"):
                anyio.from_thread.run(client.enqueue_tx, transaction.get_connection(), quick, 1)
            with pytest.raises(asyncjobs.UnsupportedConnection, match="get_connection"):
                anyio.from_thread.run(client.enqueue_tx, connection, quick, 1)
        finally:
            connection.close()

    await anyio.to_thread.run_sync(django_outside_atomic)
    assert await _count(admin, schema) == 1


async def test_sqlalchemy_autobegin_commits_with_the_callers_commit(
    client: asyncjobs.Client, pg_dsn: str, admin: asyncpg.Connection, schema: str
) -> None:
    # SQLAlchemy's "commit as you go": no explicit begin(); the enqueue is part of what
    # commit() commits, and of what leaving without it rolls back.
    for driver in ("asyncpg", "psycopg"):
        engine = sqlalchemy_engine(pg_dsn, driver)
        try:
            async with engine.connect() as conn:
                await client.enqueue_tx(conn, quick, 1)
                await conn.commit()
            async with engine.connect() as conn:
                await client.enqueue_tx(conn, quick, 2)
            async with AsyncSession(engine) as session:
                await client.enqueue_tx(session, quick, 3)
                await session.commit()
            async with AsyncSession(engine) as session:
                await client.enqueue_tx(session, quick, 4)
        finally:
            await engine.dispose()
    rows = await admin.fetch(f'SELECT args FROM "{schema}".jobs ORDER BY id')
    assert [r["args"] for r in rows] == ["[1]", "[3]"] * 2
