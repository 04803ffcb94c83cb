"""Opening PostgreSQL connections: DSN resolution, JSON codecs, keepalives, clear errors."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from typing import Any

import anyio
import asyncpg
import orjson

from ..errors import ConfigurationError, ConnectionFailed
from ..serialization import UnreadableJson

DSN_ENV = "ASYNCJOBS_DSN"

# What a database that is down, restarting or unreachable can raise: the worker's loops
# log these and retry with backoff, so no hiccup of the server takes a worker down.
DATABASE_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    ConnectionFailed,
)

# Fencing under a network partition: the worker must give up its sessions (and interrupt
# their jobs) strictly before the server lets them go, because the server letting a claim
# or the worker's key go is what lets another worker run the job. Our side notices a dead
# path within about 4 s (keepalive 2 + 1 * 2, TCP_USER_TIMEOUT 4 s for unacknowledged
# data; and the lease session's ping, see worker/lease.py); the server waits 15 s
# (keepalive 5 + 2 * 5, tcp_user_timeout 15 s). A dead worker host's jobs therefore run
# again about 15 s after it vanished (a killed process's at once: its sockets close).
GIVE_UP_AFTER = 4.0
SERVER_GIVES_UP_AFTER = 15.0
_KEEPALIVE = {"TCP_KEEPIDLE": 2, "TCP_KEEPINTVL": 1, "TCP_KEEPCNT": 2}
_USER_TIMEOUT_MS = int(GIVE_UP_AFTER * 1000)
_SERVER_KEEPALIVE = {
    "tcp_keepalives_idle": "5",
    "tcp_keepalives_interval": "2",
    "tcp_keepalives_count": "5",
    "tcp_user_timeout": str(int(SERVER_GIVES_UP_AFTER * 1000)),
}


def resolve_dsn(dsn: str | None) -> str | None:
    """The DSN to use: the argument, else $ASYNCJOBS_DSN, else None (embedded PostgreSQL)."""
    return dsn or os.environ.get(DSN_ENV) or None


def redact(dsn: str) -> str:
    """The DSN with its password hidden, for messages and logs."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", dsn)


def _encode_jsonb(value: Any) -> bytes:
    # Callers pass bytes they already encoded (to report what can't be encoded by name);
    # binary jsonb is a version byte followed by the JSON text.
    return b"\x01" + (value if isinstance(value, bytes) else orjson.dumps(value))


def _decode_jsonb(data: bytes) -> Any:
    try:
        return orjson.loads(data[1:])
    except orjson.JSONDecodeError:
        # Raised here, it would fail the whole statement (a worker's start of a batch).
        return UnreadableJson(bytes(data[1:]).decode())


async def setup_connection(conn: asyncpg.Connection) -> None:
    """Per-connection setup: binary jsonb through orjson, TCP keepalives on our side."""
    await conn.set_type_codec(
        "jsonb", schema="pg_catalog", encoder=_encode_jsonb, decoder=_decode_jsonb, format="binary"
    )
    transport = getattr(conn, "_transport", None)
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in _KEEPALIVE.items():
            if hasattr(socket, name):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)
        if hasattr(socket, "TCP_USER_TIMEOUT"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, _USER_TIMEOUT_MS)


def server_settings(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Session settings for every asyncjobs connection. jit off: our statements are short,
    and a batch's row estimates can be far off (a join of its calls with their options
    rows), so PostgreSQL could spend far longer compiling a big keyed enqueue than running
    it (figures: benchmarks/README.md)."""
    settings = {"application_name": "asyncjobs", "jit": "off", **_SERVER_KEEPALIVE}
    settings.update(extra or {})
    return settings


# SQLSTATE classes that blame the server or the session, not the statement's values:
# connection exceptions, transaction rollbacks (serialization, deadlock), insufficient
# resources (disk full, out of memory, too many connections), operator intervention
# (shutdown, restart, query cancelled), system errors. The same write may succeed later.
_SERVER_TROUBLE = frozenset({"08", "40", "53", "57", "58"})
# And lock_not_available: a lock_timeout (set for the role or the database, say) ran out
# while someone else held the row; it comes free.
_PASSING = frozenset({"55P03"})


def connection_problem(exc: BaseException) -> bool:
    """Whether `exc` blames the connection or the server (retry the same write later)
    rather than what was written: anything else (a value too long, a constraint, a
    trigger of yours) would fail the same way forever, so that data must be set apart."""
    if isinstance(exc, asyncpg.PostgresError):
        sqlstate = exc.sqlstate or ""
        return sqlstate[:2] in _SERVER_TROUBLE or sqlstate in _PASSING
    return isinstance(exc, DATABASE_ERRORS)


# What opening a connection raises for a bad DSN, a refused or unknown host, or a refusal
# by the server; each is turned into ConnectionFailed or ConfigurationError by _failure().
# (OverflowError: a port past 65535, from the socket layer.)
_CONNECT_ERRORS = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    ValueError,
    OverflowError,
)


def _failure(dsn: str, exc: BaseException) -> Exception:
    where = redact(dsn)
    permanent = True
    if isinstance(
        exc, (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError)
    ):
        hint = "check the user and password in the DSN"
    elif isinstance(exc, asyncpg.InvalidCatalogNameError):
        hint = "create the database first, or name an existing one in the DSN"
    elif isinstance(exc, (asyncpg.ClientConfigurationError, ValueError, OverflowError)):
        return ConfigurationError(
            f"invalid PostgreSQL DSN {where!r}: {exc}; expected "
            "postgresql://user:password@host:port/database"
        )
    else:
        # Down, starting up, restarting, out of connection slots, unreachable: all pass.
        permanent = False
        from .shared_server import embedded_data_dir

        data_dir = embedded_data_dir(dsn)
        if data_dir is not None:
            hint = (
                "the embedded PostgreSQL is not running there: if it stopped while processes "
                "used it, its keeper is starting it again, else the next asyncjobs process to "
                f"start does (why it stopped: {data_dir / 'log' / 'postgres.log'}); or set "
                "ASYNCJOBS_DSN to a server of your own"
            )
        else:
            hint = (
                "is PostgreSQL running and reachable there? Set ASYNCJOBS_DSN (or "
                "App(dsn=...)) to your server, or unset it to use the embedded PostgreSQL"
            )
    return ConnectionFailed(
        f"cannot connect to PostgreSQL at {where}: {exc or type(exc).__name__}; {hint}",
        permanent=permanent,
    )


async def connect(
    dsn: str, *, settings: Mapping[str, str] | None = None, timeout: float = 10.0
) -> asyncpg.Connection:
    """Open one set-up connection, or raise ConnectionFailed/ConfigurationError."""
    try:
        conn = await asyncpg.connect(
            dsn, timeout=timeout, server_settings=server_settings(settings)
        )
    except _CONNECT_ERRORS as exc:
        raise _failure(dsn, exc) from exc
    try:
        await setup_connection(conn)
    except BaseException:
        conn.terminate()
        raise
    return conn


async def close_gently(conn: asyncpg.Connection) -> None:
    """Close `conn`, even inside a cancelled scope; terminate it if that fails or takes more
    than 2 s. (A close, unlike terminate(), lets a cancel request on its way reach the
    server first, and ends the session cleanly.)"""
    with anyio.CancelScope(shield=True):
        try:
            await conn.close(timeout=2.0)
        except Exception:
            conn.terminate()
