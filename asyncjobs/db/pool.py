"""A small pool of set-up autocommit connections, cheaper per statement than asyncpg's.

asyncpg's Pool spends some five event-loop turns around each statement (a task to shield
the release, a timeout scope, a reset, the acquire queue), a good part of a single enqueue
(figures: benchmarks/README.md). Here an idle connection is taken from a list without awaiting, and
given back without a round trip. What keeps that safe is the rule for giving back: a
connection returns to the pool only when its use ended normally or with an error the
server answered (the connection is then idle and in a known state) and it holds no open
transaction; after anything else (a cancellation, a timeout, a lost or confused
connection) it is terminated, and a new one is opened when one is needed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from .connections import close_gently, connect

WarmUp = Callable[[asyncpg.Connection], Awaitable[None]]
T = TypeVar("T")


class PoolClosed(asyncpg.InterfaceError):
    """The pool was closed: no statement runs on it any more."""


class Pool:
    """Up to `max_size` connections from `connect(dsn)`; open it with `open_pool()`.

    Connections go back without a reset query: don't leave session state (SET, LISTEN,
    advisory locks, prepared statements by name) on them. A connection given back with a
    transaction open is closed, which rolls the transaction back.
    """

    def __init__(
        self, dsn: str, *, min_size: int = 1, max_size: int = 4, warm_up: WarmUp | None = None
    ) -> None:
        if not 0 <= min_size <= max_size or max_size < 1:
            raise ValueError(
                f"need 0 <= min_size <= max_size and max_size >= 1, got {min_size} and {max_size}"
            )
        self._dsn = dsn
        self._min_size = min_size
        self._max_size = max_size
        self._warm_up = warm_up
        self._idle: list[asyncpg.Connection] = []
        self._size = 0  # connections open or being opened, idle or in use
        # Tasks waiting for a connection, first come first served. A waiter's future gets
        # a connection, or None when a place became free for it to open one.
        self._waiters: collections.deque[asyncio.Future[asyncpg.Connection | None]] = (
            collections.deque()
        )
        self._retiring: set[asyncio.Task[None]] = set()
        self._closed = False

    async def open(self) -> None:
        """Open `min_size` connections (raises ConnectionFailed/ConfigurationError)."""
        opened = await asyncio.gather(
            *(self._open_connection() for _ in range(self._min_size)), return_exceptions=True
        )
        failed = [r for r in opened if isinstance(r, BaseException)]
        for result in opened:
            if isinstance(result, BaseException):
                continue
            if failed:
                self._size -= 1
                result.terminate()
            else:
                self._idle.append(result)
        if failed:
            raise failed[0]

    def get_size(self) -> int:
        """How many connections are open (or being opened), idle or in use."""
        return self._size

    def get_idle_size(self) -> int:
        """How many open connections are idle."""
        return len(self._idle)

    # -- statements: one connection each, for one statement ------------------------------

    async def execute(self, query: str, *args: Any, timeout: float | None = None) -> str:
        """`Connection.execute` on a pooled connection."""
        return await self._run(lambda conn: conn.execute(query, *args, timeout=timeout))

    async def fetch(
        self, query: str, *args: Any, timeout: float | None = None
    ) -> list[asyncpg.Record]:
        """`Connection.fetch` on a pooled connection."""
        return await self._run(lambda conn: conn.fetch(query, *args, timeout=timeout))

    async def fetchrow(
        self, query: str, *args: Any, timeout: float | None = None
    ) -> asyncpg.Record | None:
        """`Connection.fetchrow` on a pooled connection."""
        return await self._run(lambda conn: conn.fetchrow(query, *args, timeout=timeout))

    async def fetchval(
        self, query: str, *args: Any, column: int = 0, timeout: float | None = None
    ) -> Any:
        """`Connection.fetchval` on a pooled connection."""
        return await self._run(
            lambda conn: conn.fetchval(query, *args, column=column, timeout=timeout)
        )

    async def _run(self, use: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """`use` a pooled connection for one statement, then give it back (or retire it)."""
        conn = await self._acquire()
        try:
            result = await use(conn)
        except BaseException as exc:
            self._give_back(conn, exc)
            raise
        self._give_back(conn, None)
        return result

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection for a block: `async with pool.acquire() as conn:`. Don't keep it
        past the block."""
        conn = await self._acquire()
        try:
            yield conn
        except BaseException as exc:
            self._give_back(conn, exc)
            raise
        self._give_back(conn, None)

    # -- lifecycle ---------------------------------------------------------------------

    async def close(self) -> None:
        """Close the idle connections and refuse new uses; connections in use are closed
        when they are given back. Waiting acquirers get PoolClosed."""
        idle = self._refuse()
        await asyncio.gather(*(close_gently(conn) for conn in idle), *self._retiring)

    def _refuse(self) -> list[asyncpg.Connection]:
        """Refuse new uses, fail the waiters, and hand over the idle connections."""
        self._closed = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(PoolClosed("the connection pool was closed"))
        idle, self._idle = self._idle, []
        self._size -= len(idle)
        return idle

    # -- internals ---------------------------------------------------------------------

    async def _acquire(self) -> asyncpg.Connection:
        # No await on the way when a connection is idle: that is the point of this pool.
        while True:
            if self._closed:
                raise PoolClosed("the connection pool was closed")
            while self._idle:
                conn = self._idle.pop()  # the most recently used: its statements are warm
                if not conn.is_closed():
                    return conn
                self._size -= 1
            if self._size < self._max_size:
                return await self._open_connection()
            waiter: asyncio.Future[asyncpg.Connection | None] = (
                asyncio.get_running_loop().create_future()
            )
            self._waiters.append(waiter)
            try:
                given = await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                    # Handed a connection (or a place) just as we were cancelled: pass it on.
                    self._hand_over(waiter.result())
                else:
                    with contextlib.suppress(ValueError):
                        self._waiters.remove(waiter)
                raise
            if given is not None:
                return given
            # A place became free: loop, to open a connection (or take one given back).

    async def _open_connection(self) -> asyncpg.Connection:
        self._size += 1
        try:
            conn = await connect(self._dsn)
            try:
                if self._warm_up is not None:
                    await self._warm_up(conn)
            except BaseException:
                conn.terminate()
                raise
        except BaseException:
            self._size -= 1
            self._hand_over(None)
            raise
        return conn

    def _give_back(self, conn: asyncpg.Connection, exc: BaseException | None) -> None:
        """Return `conn` after a use that ended with `exc` (None: normally), or retire it
        when its state is not known to be clean."""
        if (
            (exc is None or _answered(exc))
            and not self._closed
            and not conn.is_closed()
            and not conn.is_in_transaction()
        ):
            self._hand_over(conn)
            return
        if conn.is_closed():
            self._size -= 1
            self._hand_over(None)
            return
        # Closed in the background, gracefully: a statement cut short by a cancellation or
        # a timeout has a cancel request on its way, which terminate() would drop (the
        # statement would then run on); close() lets it reach the server first, and the
        # server rolls back an open transaction. The place is free once it is closed.
        task = asyncio.get_running_loop().create_task(self._retire(conn))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _retire(self, conn: asyncpg.Connection) -> None:
        try:
            await close_gently(conn)
        finally:
            self._size -= 1
            self._hand_over(None)

    def _hand_over(self, conn: asyncpg.Connection | None) -> None:
        """Give `conn` (or, for None, a free place) to the first waiter, else keep it idle."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        if conn is not None:
            if self._closed:
                conn.terminate()
                self._size -= 1
            else:
                self._idle.append(conn)


def _answered(exc: BaseException) -> bool:
    """Whether `exc` is an error the server answered a statement with, after which the
    connection is idle and usable (not a FATAL one that ends the session)."""
    return isinstance(exc, asyncpg.PostgresError) and getattr(exc, "severity_en", None) not in (
        "FATAL",
        "PANIC",
    )


async def open_pool(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 4,
    warm_up: WarmUp | None = None,
) -> Pool:
    """Open a pool of set-up autocommit connections, or raise ConnectionFailed.

    `warm_up` runs on each new connection after the setup: a place to run the statements
    the pool will serve once, so their first real use is not slowed by parsing and planning.
    """
    pool = Pool(dsn, min_size=min_size, max_size=max_size, warm_up=warm_up)
    await pool.open()
    return pool
