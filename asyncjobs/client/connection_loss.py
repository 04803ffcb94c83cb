"""A connection that breaks while a client call runs (a server restart, a failover, a network
cut): asyncjobs' own ConnectionLost, saying whether the call may have taken effect."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import asyncpg

from ..db.pool import PoolClosed
from ..errors import AsyncJobsError, ConnectionLost


def lost(exc: BaseException) -> bool:
    """Whether `exc` says the connection broke mid-statement (not that a statement was
    refused, nor that the client was closed)."""
    if isinstance(exc, (AsyncJobsError, PoolClosed)):
        return False
    if isinstance(exc, asyncpg.PostgresConnectionError):  # class 08, and asyncpg's own
        return True
    if isinstance(exc, asyncpg.PostgresError):
        # FATAL: the server ended the session (a shutdown, a terminated backend).
        return getattr(exc, "severity_en", None) in ("FATAL", "PANIC")
    return isinstance(
        exc, (OSError, TimeoutError, asyncpg.InterfaceError, asyncpg.InternalClientError)
    )


@contextlib.contextmanager
def lost_connection(doing: str, *, writes: bool) -> Iterator[None]:
    """Turn a connection that broke while `doing` into ConnectionLost. After a write, it
    may have committed before the answer was lost: the caller can't know, and is told so."""
    try:
        yield
    except Exception as exc:
        if not lost(exc):
            raise
        if writes:
            outcome = (
                "it may or may not have been done; check before retrying (an enqueue retried "
                "blindly may make a duplicate job: enqueue with a unique_key to make retries "
                "safe)"
            )
        else:
            outcome = "nothing was changed; retry"
        raise ConnectionLost(
            f"the connection to PostgreSQL was lost while {doing} "
            f"({type(exc).__name__}: {exc}); {outcome}",
            maybe_stored=writes,
        ) from exc
