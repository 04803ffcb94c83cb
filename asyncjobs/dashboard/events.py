"""Live updates: one listening session per dashboard turns the workers' NOTIFY traffic into
coalesced change events for every open page (server-sent events).

However many tabs are open, there is one LISTEN connection; a message only marks what
changed (jobs, workers, queues, schedules) and wakes the pages' streams, and each stream
sends at most one event per COALESCE seconds, so a drain of thousands of jobs a second costs
the browser (and the database, which each page re-reads on an event) a few reads a second.
A running job's progress and log lines (the workers' batched progress writes notify, naming
the jobs) wake only the pages of those jobs.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

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
    """One open page's stream: the kinds of change seen since its last event, and the job
    whose progress it shows, if any."""

    def __init__(self, job_id: int | None = None) -> None:
        self.job_id = job_id
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
            for channel in (*self._kinds, self._channels.progress, self._channels.control):
                await conn.add_listener(channel, self._on_message)
            conn.add_termination_listener(self._lost)
            self._conn = conn

    def _on_message(self, _conn: object, _pid: int, channel: str, payload: object) -> None:
        if channel == self._channels.progress:
            self._on_progress(str(payload))
            return
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

    def _on_progress(self, payload: str) -> None:
        # Only the pages of the jobs named (all job pages when none is) re-read.
        named = {int(i) for i in payload.split(",") if i.isdigit()}
        for subscriber in self._subscribers:
            if subscriber.job_id is not None and (not named or subscriber.job_id in named):
                subscriber.mark("job")

    def _lost(self, _conn: object) -> None:
        # Messages may have been missed: every page reloads what it shows.
        self._conn = None
        for subscriber in self._subscribers:
            subscriber.mark("all")

    async def stream(self, dsn: str, job_id: int | None = None) -> AsyncIterator[str]:
        """Server-sent events for one page until it goes away; `job_id`: the page shows
        that job, whose progress writes wake it too."""
        subscriber = Subscriber(job_id)
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
                with anyio.move_on_after(KEEPALIVE) as scope:
                    await subscriber.woken.wait()
                if scope.cancelled_caught:
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
