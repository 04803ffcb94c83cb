"""Connections of the libraries `enqueue_tx` (and `check_fence`) take, made from a test DSN:
SQLAlchemy's engines, psycopg's connections and a configured Django; and a transaction on
each (WAYS)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import asyncpg
import psycopg
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine


def sqlalchemy_engine(dsn: str, driver: str = "asyncpg") -> AsyncEngine:
    """An async engine on `dsn` through `driver` (asyncpg or psycopg)."""
    return create_async_engine(dsn.replace("postgresql://", f"postgresql+{driver}://", 1))


async def psycopg_async(dsn: str, *, autocommit: bool = False) -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(dsn, autocommit=autocommit)


def psycopg_sync(dsn: str, *, autocommit: bool = False) -> psycopg.Connection[Any]:
    return psycopg.Connection.connect(dsn, autocommit=autocommit)


def django_database(dsn: str) -> dict[str, Any]:
    """Django's DATABASES entry for `dsn` (psycopg 3)."""
    params = conninfo_to_dict(dsn)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": params.get("dbname", "postgres"),
        "USER": params.get("user", ""),
        "PASSWORD": params.get("password", ""),
        "HOST": params.get("host", ""),
        "PORT": params.get("port", ""),
        "CONN_MAX_AGE": 0,
    }


def configure_django(dsn: str) -> None:
    """Django's settings, once per process, with `dsn` as its default database."""
    import django
    from django.conf import settings

    if settings.configured:
        return
    settings.configure(DATABASES={"default": django_database(dsn)}, INSTALLED_APPS=[], USE_TZ=True)
    django.setup()


# -- each library: runs `body(conn)` in a transaction on a new connection of its own, and
# commits (or rolls back, when `body` raises); WAYS names them --------------------------

Body = Callable[[Any], Awaitable[None]]


async def _asyncpg(dsn: str, body: Body) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await body(conn)
    finally:
        await conn.close()


async def _sqlalchemy_connection(dsn: str, body: Body) -> None:
    engine = sqlalchemy_engine(dsn)
    try:
        async with engine.begin() as conn:
            await body(conn)
    finally:
        await engine.dispose()


async def _sqlalchemy_session(dsn: str, body: Body) -> None:
    engine = sqlalchemy_engine(dsn)
    try:
        async with AsyncSession(engine) as session, session.begin():
            await body(session)
    finally:
        await engine.dispose()


async def _sqlalchemy_psycopg(dsn: str, body: Body) -> None:
    engine = sqlalchemy_engine(dsn, "psycopg")
    try:
        async with engine.begin() as conn:
            await body(conn)
    finally:
        await engine.dispose()


async def _psycopg_async(dsn: str, body: Body) -> None:
    conn = await psycopg_async(dsn)
    try:
        async with conn.transaction():
            await body(conn)
    finally:
        await conn.close()


async def _psycopg_sync(dsn: str, body: Body) -> None:
    # A sync connection in async code: asyncjobs runs its round trip in a thread.
    conn = psycopg_sync(dsn)
    try:
        with conn.transaction():
            await body(conn)
    finally:
        conn.close()


async def _django(dsn: str, body: Body) -> None:
    # Django's ORM is sync (and refuses to run where an event loop runs): its atomic block
    # runs in a thread, and the body goes back to the loop.
    configure_django(dsn)

    def in_thread() -> None:
        from django.db import connection, transaction

        try:
            with transaction.atomic():
                # From async code, the connection itself: django.db.connection would be
                # looked up again on the event loop's thread.
                anyio.from_thread.run(body, transaction.get_connection())
        finally:
            connection.close()

    await anyio.to_thread.run_sync(in_thread)


WAYS: dict[str, Callable[[str, Body], Awaitable[None]]] = {
    "asyncpg": _asyncpg,
    "sqlalchemy-connection": _sqlalchemy_connection,
    "sqlalchemy-session": _sqlalchemy_session,
    "sqlalchemy-psycopg": _sqlalchemy_psycopg,
    "psycopg-async": _psycopg_async,
    "psycopg-sync": _psycopg_sync,
    "django": _django,
}
