"""Live updates: one listening session per dashboard turns the workers' NOTIFY traffic into
coalesced change events for every open page (server-sent events).

However many tabs are open, there is one LISTEN connection; a message only marks what
changed (jobs, workers, queues, schedules) and wakes the pages' streams, and each stream
sends at most one event per COALESCE seconds, so a drain of thousands of jobs a second costs
the browser (and the database, which each page re-reads on an event) a few reads a second.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio
import asyncpg

from ..db.connections import DATABASE_ERRORS, connect
from ..db.sql import Channels

logger = logging.getLogger("asyncjobs.dashboard")

# Seconds between two events of one stream, at most one per window.
COALESCE = 0.5
# A comment line this often keeps proxies from closing a quiet stream.
KEEPALIVE = 15.0


class Subscriber:
    """One open page's stream: the kinds of change seen since its last event."""

    def __init__(self) -> None:
        self.kinds: set[str] = set()
        self.woken = anyio.Event()

    def mark(self, kind: str) -> None:
        self.kinds.add(kind)
        self.woken.set()


class Events:
    """The dashboard's one listening session, opened with the first stream."""

    def __init__(self, channels: Channels) -> None:
        self._channels = channels
        self._conn: asyncpg.Connection | None = None
        self._lock: anyio.Lock | None = None
        self._subscribers: set[Subscriber] = set()
        self._kinds = {
            channels.enqueue: "jobs",
            channels.done: "jobs",
            channels.schedules: "schedules",
        }

    @property
    def listening(self) -> int:
        """1 while the listening session is open, else 0 (for tests and the overview)."""
        return int(self._conn is not None and not self._conn.is_closed())

    async def _ensure(self, dsn: str) -> None:
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            if self._conn is not None and not self._conn.is_closed():
                return
            conn = await connect(dsn)
            for channel in (*self._kinds, self._channels.control):
                await conn.add_listener(channel, self._on_message)
            conn.add_termination_listener(self._lost)
            self._conn = conn

    def _on_message(self, _conn: object, _pid: int, channel: str, payload: object) -> None:
        kind = self._kinds.get(channel)
        if kind is None:  # control: say what it is about
            word = str(payload).partition(" ")[0]
            kind = {
                "workers": "workers",
                "stop": "workers",
                "paused": "queues",
                "resumed": "queues",
            }.get(word, "jobs")
        for subscriber in self._subscribers:
            subscriber.mark(kind)

    def _lost(self, _conn: object) -> None:
        # Messages may have been missed: every page reloads what it shows.
        self._conn = None
        for subscriber in self._subscribers:
            subscriber.mark("all")

    async def stream(
        self, dsn: str, watch: Callable[[], Awaitable[bool]] | None = None
    ) -> AsyncIterator[str]:
        """Server-sent events for one page until it goes away.

        `watch`: for a running job's page, what NOTIFY does not carry (its progress and log
        lines are written without one, to keep workers' writes cheap): asked every
        COALESCE seconds while the page is open, a change is sent as a "job" event."""
        subscriber = Subscriber()
        self._subscribers.add(subscriber)
        try:
            yield "retry: 2000\n\n"
            while True:
                try:
                    await self._ensure(dsn)
                except DATABASE_ERRORS as exc:
                    logger.warning("dashboard cannot listen (retrying): %s", exc)
                    await anyio.sleep(2)
                    continue
                with anyio.move_on_after(KEEPALIVE if watch is None else COALESCE) as scope:
                    await subscriber.woken.wait()
                if scope.cancelled_caught:
                    if watch is not None and await watch():
                        yield "event: change\ndata: job\n\n"
                    elif watch is None:
                        yield ": keepalive\n\n"
                    continue
                await anyio.sleep(COALESCE)  # what comes meanwhile joins this event
                kinds, subscriber.kinds = subscriber.kinds, set()
                subscriber.woken = anyio.Event()
                yield f"event: change\ndata: {','.join(sorted(kinds))}\n\n"
        finally:
            self._subscribers.discard(subscriber)
            if not self._subscribers:
                await self.close()

    async def close(self) -> None:
        """Close the listening session (a new stream opens it again)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.remove_termination_listener(self._lost)
            with anyio.CancelScope(shield=True):
                await conn.close()
