"""The worker's scheduler: enqueues each due schedule's job, once per tick however many
workers run.

It sleeps until the earliest next_run_at (not a poll), woken early by the NOTIFY a
schedule change sends. A tick is taken in one transaction: lock the due row (SKIP LOCKED),
enqueue its job on the same connection, move next_run_at on guarded by the value read.
Another worker either skips the locked row or, once it is committed, no longer finds it due.
"""

from __future__ import annotations

import datetime
import functools
import logging
import math
from typing import TYPE_CHECKING, cast

import anyio
import asyncpg

from ..client.enqueue import enqueue_calls, enqueue_with_hooks
from ..db.connections import DATABASE_ERRORS
from ..db.pool import Pool
from ..db.sql import Queries
from ..errors import AsyncJobsError
from ..hooks import Hooks
from ..retry import RetryDelay
from ..schedule import MISSED_AFTER, Schedule, next_run

if TYPE_CHECKING:
    from ..db.migrations import Connection

logger = logging.getLogger("asyncjobs.scheduler")


class _TickTaken(Exception):
    """A tick's guarded update changed nothing: roll the tick back, enqueue nothing."""


_BUSY_RETRY = 0.1

_RETRIED: tuple[type[Exception], ...] = (*DATABASE_ERRORS, _TickTaken)


class Scheduler:
    """Ticks the stored schedules for one worker, until cancelled."""

    def __init__(
        self,
        *,
        sql: Queries,
        pool: Pool,
        hooks: Hooks | None = None,
        max_sleep: float = 60.0,
        batch_size: int = 100,
    ) -> None:
        self._sql = sql
        self._pool = pool
        # The app's hooks: a tick's enqueue goes through its enqueue hooks, as a client's.
        self._hooks = hooks if hooks is not None else Hooks()
        # A ceiling on one sleep: a missed NOTIFY or a stepped wall clock costs at most this.
        self._max_sleep = max_sleep
        self._batch_size = batch_size
        self._wake = anyio.Event()

    def wake(self) -> None:
        """A schedule changed: re-read when the next one is due."""
        self._wake.set()

    async def run(self) -> None:
        """Tick due schedules and sleep until the next one, until cancelled."""
        retry = RetryDelay(most=5.0)
        while True:
            # A fresh event before reading: a change during the tick is not lost.
            self._wake = anyio.Event()
            try:
                delay = await self.tick()
                retry.reset()
            except _RETRIED as exc:
                delay = retry.next()
                logger.warning("schedule tick failed (retrying in %.2fs): %s", delay, exc)
            with anyio.move_on_after(min(delay, self._max_sleep)):
                await self._wake.wait()

    async def tick(self) -> float:
        """Enqueue the jobs of every due schedule; return seconds until the next is due."""
        while (taken := await self._tick_batch()) == self._batch_size:
            pass
        seconds: float | None = await self._pool.fetchval(self._sql.next_schedule_due)
        if seconds is None:
            return math.inf
        if seconds <= 0 and taken == 0:
            # Due, but locked by another worker taking the tick right now. Its commit sends
            # no NOTIFY (next_run_at moves later), so look again shortly rather than spin.
            return _BUSY_RETRY
        return max(0.0, seconds)

    async def _tick_batch(self) -> int:
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(self._sql.due_schedules, self._batch_size)
            for row in rows:
                await self._tick_one(conn, Schedule.from_row(row), row["now"])
        return len(rows)

    async def _tick_one(self, conn: Connection, schedule: Schedule, now: datetime.datetime) -> None:
        due = schedule.next_run_at
        try:
            following = next_run(schedule.cron, schedule.timezone, now)
            call = schedule.call()
        except AsyncJobsError as exc:
            # Stored by hand, or a time zone gone from this machine's tz database: pause it
            # rather than fail every tick of every schedule.
            logger.error("schedule %r cannot run, pausing it: %s", schedule.name, exc)
            await conn.fetch(self._sql.pause_schedule, schedule.name, True, None)
            return
        job_id = None
        if schedule.missed == "skip" and now - due > MISSED_AFTER:
            logger.info(
                "schedule %r: skipping the tick due at %s (missed; policy 'skip')",
                schedule.name,
                due.isoformat(),
            )
        else:
            # A pooled connection proxies a Connection: the enqueue runs on it as is.
            on = cast("asyncpg.Connection", conn)
            (job_id,) = await enqueue_with_hooks(
                functools.partial(enqueue_calls, on, self._sql), [call], self._hooks
            )
        taken = await conn.fetchval(
            self._sql.advance_schedule, schedule.name, due, following, job_id
        )
        if taken is None:
            # Can't happen while we hold the row lock; if it ever does, enqueue nothing.
            raise _TickTaken(f"schedule {schedule.name!r}: tick at {due} was taken twice")
