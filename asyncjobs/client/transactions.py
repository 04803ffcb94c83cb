"""Running a statement on the caller's own connection, inside the caller's transaction:
what `enqueue_tx` and `enqueue_many_tx` (and the sync API's `enqueue_tx`) stand on.

Accepted: asyncpg connections; SQLAlchemy's AsyncConnection and AsyncSession on asyncpg
(or psycopg); psycopg 3 connections, async and sync; Django's connection (PostgreSQL on
psycopg 3) inside `transaction.atomic()`. Each runs the very statements of queries.sql:
they use PostgreSQL's own `$n` parameters, which asyncpg takes, SQLAlchemy's asyncpg
dialect passes through, and psycopg's RawCursor (psycopg >= 3.2) sends as they are. The
NOTIFY that wakes workers is part of the enqueue statement, so it goes out when (and only
if) the caller commits.

The optional packages are imported only when a connection of theirs is passed.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias

import anyio
import asyncpg
from asyncpg.pool import PoolConnectionProxy

from ..db.sql import Queries
from ..errors import NotInTransaction, UnsupportedConnection
from ..tasks import TaskCall
from .enqueue import enqueue_statement, refusals

if TYPE_CHECKING:
    import psycopg
    from django.db.backends.base.base import BaseDatabaseWrapper
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

    SyncConnection: TypeAlias = psycopg.Connection[Any] | BaseDatabaseWrapper
    """What the sync API's `enqueue_tx` takes."""

    Connection: TypeAlias = (
        asyncpg.Connection[Any]
        | PoolConnectionProxy[Any]
        | AsyncConnection
        | AsyncSession
        | psycopg.AsyncConnection[Any]
        | SyncConnection
    )
    """What `enqueue_tx` and `enqueue_many_tx` take."""

ACCEPTED = (
    "an asyncpg connection, an SQLAlchemy AsyncConnection or AsyncSession (on "
    "postgresql+asyncpg:// or postgresql+psycopg://), a psycopg 3 connection (sync or "
    "async), or Django's connection (django.db.connection, PostgreSQL on psycopg 3)"
)
SYNC_ACCEPTED = (
    "a psycopg 3 connection (psycopg.Connection) or Django's connection "
    "(django.db.connection, PostgreSQL on psycopg 3)"
)


class Use(NamedTuple):
    """What a statement on the caller's connection is for, as its refusals say it: `doing`
    it, and `what` would go wrong outside a transaction."""

    doing: str
    what: str


ENQUEUE = Use("enqueue", "the job would be committed at once")
"""`enqueue_tx`: the job must commit (or roll back) with the caller's work."""
FENCE = Use("check the fence", "its lock would end with the statement and guard nothing")
"""`current_job().check_fence(conn)`: the job's row stays locked until the caller's commit."""


def _from(conn: object, package: str) -> bool:
    module = type(conn).__module__
    return module == package or module.startswith(package + ".")


def is_sync(conn: object) -> bool:
    """Whether `conn` is a connection the sync path runs on (psycopg sync or Django)."""
    if _from(conn, "django"):
        return True
    if _from(conn, "psycopg"):
        import psycopg

        return isinstance(conn, psycopg.Connection)
    return False


async def fetch_value(
    conn: Connection, sql: str, parameters: Sequence[Any], use: Use = ENQUEUE
) -> Any:
    """Run `sql` on the caller's connection, in its transaction; the first column of the
    first row. UnsupportedConnection for an object that isn't one, NotInTransaction for a
    connection that would commit the statement on its own (the message says why that is
    wrong for `use`)."""
    if isinstance(conn, (asyncpg.Connection, PoolConnectionProxy)):
        if not conn.is_in_transaction():
            hint = " (or use client.enqueue() to enqueue on its own)" if use == ENQUEUE else ""
            raise NotInTransaction(
                f"this asyncpg connection is not in a transaction, so {use.what}: "
                f"{use.doing} inside `async with conn.transaction():`{hint}"
            )
        return await conn.fetchval(sql, *parameters)
    if _from(conn, "sqlalchemy"):
        return await _fetch_sqlalchemy(conn, sql, parameters, use)
    if _from(conn, "psycopg"):
        import psycopg

        if isinstance(conn, psycopg.AsyncConnection):
            _check_psycopg_transaction(conn, use)
            async with _raw_cursors().AsyncRawCursor(conn) as cursor:
                await cursor.execute(sql, parameters)
                row = await cursor.fetchone()
            return None if row is None else row[0]
    if _from(conn, "django") and type(conn).__name__ == "ConnectionProxy":
        raise UnsupportedConnection(
            "django.db.connection stands for each thread's own connection, and this one "
            "would be looked up on another thread: from async code pass the connection "
            "itself, `transaction.get_connection()` (or enqueue with asyncjobs.sync from "
            "the sync code that holds the atomic block)"
        )
    if is_sync(conn):
        # A sync connection in async code: its round trip runs in a thread, not on the loop.
        return await anyio.to_thread.run_sync(fetch_value_sync, conn, sql, parameters, use)
    raise UnsupportedConnection(f"cannot {use.doing} on {_shown(conn)}: pass {ACCEPTED}")


def fetch_value_sync(
    conn: SyncConnection, sql: str, parameters: Sequence[Any], use: Use = ENQUEUE
) -> Any:
    """`fetch_value` for the sync connections: psycopg's Connection and Django's."""
    raw = _sync_connection(conn, use)
    with _raw_cursors().RawCursor(raw) as cursor:
        cursor.execute(sql, parameters)
        row = cursor.fetchone()
    return None if row is None else row[0]


def _sync_connection(conn: SyncConnection, use: Use = ENQUEUE) -> psycopg.Connection[Any]:
    """The psycopg connection of `conn` (psycopg's or Django's), in a transaction; else
    UnsupportedConnection or NotInTransaction."""
    import psycopg

    raw: object = conn
    if _from(conn, "django"):
        raw = _django_connection(conn, use)
    if not isinstance(raw, psycopg.Connection):
        raise UnsupportedConnection(f"cannot {use.doing} on {_shown(conn)}: pass {SYNC_ACCEPTED}")
    _check_psycopg_transaction(raw, use)
    return raw


def _raw_cursors() -> ModuleType:
    """psycopg itself, once it is known to have RawCursor (added in psycopg 3.2)."""
    import psycopg

    if not hasattr(psycopg, "RawCursor"):
        raise UnsupportedConnection(
            f"asyncjobs enqueues with psycopg's RawCursor, which psycopg {psycopg.__version__} "
            "lacks: upgrade to psycopg 3.2 or later (pip install 'asyncjobs[psycopg]')"
        )
    return psycopg


def _check_psycopg_transaction(
    conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any], use: Use
) -> None:
    from psycopg.pq import TransactionStatus

    # Without autocommit psycopg begins a transaction itself, to be committed by the caller.
    if conn.autocommit and conn.info.transaction_status == TransactionStatus.IDLE:
        raise NotInTransaction(
            "this psycopg connection is in autocommit mode and not in a transaction, so "
            f"{use.what}: {use.doing} inside `with conn.transaction():`"
        )


def _django_connection(conn: BaseDatabaseWrapper, use: Use) -> object:
    """The psycopg connection under Django's, once it is known to be in a transaction."""
    if getattr(conn, "vendor", None) != "postgresql":
        raise UnsupportedConnection(
            f"cannot {use.doing} on Django's {getattr(conn, 'vendor', '?')!r} database "
            f"{getattr(conn, 'alias', '?')!r}: asyncjobs needs PostgreSQL"
        )
    if not conn.in_atomic_block:
        raise NotInTransaction(
            f"Django's database {conn.alias!r} is not in a transaction (it autocommits), so "
            f"{use.what}: {use.doing} inside `with transaction.atomic():`"
        )
    raw = conn.connection
    if raw is None:
        conn.ensure_connection()
        raw = conn.connection
    if not _from(raw, "psycopg"):
        raise UnsupportedConnection(
            f"Django's database {conn.alias!r} runs on {type(raw).__module__}: asyncjobs "
            "enqueues through psycopg 3 (pip install 'psycopg[binary]'; Django uses it "
            "when it is installed)"
        )
    return raw


async def _fetch_sqlalchemy(conn: object, sql: str, parameters: Sequence[Any], use: Use) -> Any:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

    if isinstance(conn, AsyncSession):
        # The session's connection, in the session's transaction (begun here if need be).
        conn = await conn.connection()
    if not isinstance(conn, AsyncConnection):
        raise UnsupportedConnection(
            f"cannot {use.doing} on {_shown(conn)}: pass {ACCEPTED} (for a sync SQLAlchemy "
            "session use asyncjobs.sync with its psycopg connection)"
        )
    options = conn.sync_connection.get_execution_options() if conn.sync_connection else {}
    if options.get("isolation_level") == "AUTOCOMMIT":
        raise NotInTransaction(
            "this SQLAlchemy connection runs with isolation_level='AUTOCOMMIT', so "
            f"{use.what}: {use.doing} in a transaction, on a connection without AUTOCOMMIT"
        )
    driver = conn.dialect.driver
    if driver == "asyncpg":
        # The dialect passes `$n` statements to asyncpg as they are, and begins the
        # transaction SQLAlchemy has (or autobegins) first.
        result = await conn.exec_driver_sql(sql, tuple(parameters))
        return result.scalar_one()
    if driver == "psycopg":
        if not conn.in_transaction():
            # So that the caller's commit() commits it: SQLAlchemy commits only a
            # transaction it knows of.
            await conn.begin()
        raw = await conn.get_raw_connection()
        return await fetch_value(raw.driver_connection, sql, parameters, use)
    raise UnsupportedConnection(
        f"cannot {use.doing} on an SQLAlchemy connection with driver {driver!r}: use "
        "postgresql+asyncpg:// or postgresql+psycopg://"
    )


def _shown(conn: object) -> str:
    kind = type(conn)
    return f"a {kind.__module__}.{kind.__qualname__}"


async def enqueue_in_transaction(
    conn: Connection, sql: Queries, calls: list[TaskCall[Any]], trace_context: str | None = None
) -> list[int]:
    """Store these calls' jobs on the caller's connection, in its transaction; their ids."""
    if not calls:
        _check_kind(conn)
        return []
    statement, parameters = enqueue_statement(sql, calls, trace_context)
    with refusals():
        ids: list[int] = await fetch_value(conn, statement, parameters)
    return ids


def enqueue_in_transaction_sync(
    conn: SyncConnection, sql: Queries, calls: list[TaskCall[Any]]
) -> list[int]:
    """`enqueue_in_transaction` on a sync connection (psycopg's or Django's)."""
    if not calls:
        _sync_connection(conn)  # the same refusals as with calls
        return []
    statement, parameters = enqueue_statement(sql, calls)
    with refusals():
        ids: list[int] = fetch_value_sync(conn, statement, parameters)
    return ids


def _check_kind(conn: object) -> None:
    """UnsupportedConnection unless `conn` is of a kind `fetch_value` takes."""
    if isinstance(conn, (asyncpg.Connection, PoolConnectionProxy)) or any(
        _from(conn, package) for package in ("sqlalchemy", "psycopg", "django")
    ):
        return
    raise UnsupportedConnection(f"cannot enqueue on {_shown(conn)}: pass {ACCEPTED}")
