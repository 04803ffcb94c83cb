"""Schedules at run time (`client.schedules`): add, change, pause, trigger and remove
recurring jobs; and what a starting worker does to store the schedules declared in code."""

from __future__ import annotations

import contextlib
import datetime
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import asyncpg

from ..db.sql import Queries
from ..errors import ConfigurationError, ScheduleConflict, ScheduleNotFound, UnknownTaskError
from ..retry import Backoff
from ..schedule import Periodic, Schedule, define, next_run, validate_name
from ..tasks import JobOptions, Task
from .connection_loss import lost_connection

if TYPE_CHECKING:
    from ..db.migrations import Connection
    from .client import Client

logger = logging.getLogger("asyncjobs.schedules")


class Schedules:
    """The recurring jobs stored in the database; reached as `client.schedules`."""

    def __init__(self, client: Client) -> None:
        self._client = client

    @property
    def _sql(self) -> Queries:
        return self._client.sql

    async def add(
        self,
        name: str,
        task: Task[Any, Any] | str,
        cron: str,
        *,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        timezone: str = "UTC",
        missed: str = "once",
        queue: str | None = None,
        priority: int | None = None,
        max_attempts: int | None = None,
        timeout: float | datetime.timedelta | None = None,
        paused: bool = False,
    ) -> Schedule:
        """Store a new schedule: a job of `task` with these arguments at every tick of
        `cron` in `timezone`. The job options default to the task's.

        Raises ScheduleConflict if the name is taken, UnknownTaskError for a task name this
        client's app doesn't have, ConfigurationError for a bad expression, time zone,
        policy or option, TypeError for arguments that don't fit the task. Nothing is
        stored unless it is all valid.
        """
        periodic = define(
            name,
            self._task(task),
            cron,
            timezone=timezone,
            args=args,
            kwargs=kwargs,
            missed=missed,
            queue=queue,
            priority=priority,
            max_attempts=max_attempts,
            timeout=timeout,
        )
        if not isinstance(paused, bool):
            raise ConfigurationError(f"paused must be True or False, got {paused!r}")
        first = periodic.next_after(_now())
        with lost_connection(f"adding schedule {name!r}", writes=True):
            row = await self._client.pool.fetchrow(
                self._sql.insert_schedule, *periodic.row(), False, paused, first
            )
        if row is None:
            raise ScheduleConflict(
                f"a schedule named {name!r} exists: change it with update(), or remove it first"
            )
        return Schedule.from_row(row)

    async def update(
        self,
        name: str,
        *,
        cron: str | None = None,
        timezone: str | None = None,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        missed: str | None = None,
        queue: str | None = None,
        priority: int | None = None,
        max_attempts: int | None = None,
        timeout: float | datetime.timedelta | None = None,
    ) -> Schedule:
        """Change a schedule added at run time; what is not given stays as it is.

        A new `cron` or `timezone` moves the next run to the first new tick from now.
        New arguments are checked against the task, which this client's app must have.
        Raises ScheduleConflict for a schedule declared in code (change the code).
        """
        async with self._writing(f"updating schedule {name!r}") as conn:
            current = _declared_refused(await self._locked(conn, name), "update")
            periodic = define(
                name,
                self._stored_task(current, new_arguments=args is not None or kwargs is not None),
                current.cron if cron is None else cron,
                timezone=current.timezone if timezone is None else timezone,
                args=current.args if args is None else args,
                kwargs=current.kwargs if kwargs is None else kwargs,
                missed=current.missed if missed is None else missed,
                queue=queue,
                priority=priority,
                max_attempts=max_attempts,
                timeout=timeout,
            )
            row = await conn.fetchrow(
                self._sql.update_schedule, *periodic.row(), False, _next(current, periodic)
            )
        return Schedule.from_row(row)

    async def remove(self, name: str) -> None:
        """Delete a schedule added at run time. Jobs it already enqueued are not touched.
        Raises ScheduleConflict for one declared in code (remove the declaration)."""
        async with self._writing(f"removing schedule {name!r}") as conn:
            _declared_refused(await self._locked(conn, name), "remove")
            await conn.fetch(self._sql.delete_schedules, [name])

    async def pause(self, name: str) -> Schedule:
        """Stop a schedule's ticks until `resume()`; a worker restart keeps it paused."""
        async with self._writing(f"pausing schedule {name!r}") as conn:
            await self._locked(conn, name)
            row = await conn.fetchrow(self._sql.pause_schedule, name, True, None)
        return Schedule.from_row(row)

    async def resume(self, name: str) -> Schedule:
        """Tick again, from the first tick after now: ticks that fell while paused don't run."""
        async with self._writing(f"resuming schedule {name!r}") as conn:
            current = await self._locked(conn, name)
            if not current.paused:
                return current
            following = next_run(current.cron, current.timezone, _now())
            row = await conn.fetchrow(self._sql.pause_schedule, name, False, following)
        return Schedule.from_row(row)

    async def trigger(self, name: str) -> int:
        """Enqueue the schedule's job now, outside its ticks (which go on as before);
        return the job's id. Works on paused schedules too."""
        async with self._writing(f"triggering schedule {name!r}") as conn:
            current = await self._locked(conn, name)
            (job_id,) = await self._client.enqueue_many_tx(conn, [current.call()])
        return job_id

    async def get(self, name: str) -> Schedule:
        """One schedule; ScheduleNotFound if there is none of that name."""
        validate_name(name)
        with lost_connection(f"reading schedule {name!r}", writes=False):
            row = await self._client.pool.fetchrow(self._sql.get_schedule, name)
        if row is None:
            raise _not_found(name)
        return Schedule.from_row(row)

    async def list(self, declared: bool | None = None) -> list[Schedule]:
        """Every schedule by name; only those declared in code (True) or added at run
        time (False) if asked."""
        if declared is not None and not isinstance(declared, bool):
            raise ConfigurationError(f"declared must be True, False or None, got {declared!r}")
        with lost_connection("listing schedules", writes=False):
            rows = await self._client.pool.fetch(self._sql.list_schedules, declared)
        return [Schedule.from_row(row) for row in rows]

    @contextlib.asynccontextmanager
    async def _writing(self, doing: str) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection in a transaction, for a change of schedules: a connection
        that breaks meanwhile raises ConnectionLost (the change may have committed)."""
        with lost_connection(doing, writes=True):
            async with self._client.pool.acquire() as conn, conn.transaction():
                yield conn

    async def _locked(self, conn: Connection, name: str) -> Schedule:
        validate_name(name)
        row = await conn.fetchrow(self._sql.lock_schedule, name)
        if row is None:
            raise _not_found(name)
        return Schedule.from_row(row)

    def _task(self, task: Task[Any, Any] | str) -> Task[Any, Any]:
        if isinstance(task, Task):
            return task
        if not isinstance(task, str):
            raise ConfigurationError(f"a schedule needs a task or a task name, got {task!r}")
        found = self._client.app.tasks.get(task)
        if found is None:
            known = ", ".join(sorted(self._client.app.tasks)) or "none"
            raise UnknownTaskError(
                f"no task named {task!r} in this app (it has: {known}): a schedule's task "
                "must be known so that its arguments can be checked (CLI: --app MODULE:APP)"
            )
        return found

    def _stored_task(self, current: Schedule, *, new_arguments: bool) -> Task[Any, Any]:
        """The schedule's task with the schedule's stored options as its defaults."""
        options = JobOptions(
            queue=current.queue,
            priority=current.priority,
            max_attempts=current.max_attempts,
            timeout=current.timeout,
        )
        known = self._client.app.tasks.get(current.task)
        if known is None and new_arguments:
            self._task(current.task)  # raises UnknownTaskError
        fn = known.fn if known is not None else _any_arguments
        return Task(fn, name=current.task, options=options, backoff=Backoff())


def _any_arguments(*args: Any, **kwargs: Any) -> None:
    """Stands in for a task whose code this client lacks when its arguments don't change."""


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _next(current: Schedule, periodic: Periodic) -> datetime.datetime:
    if (current.cron, current.timezone) == (periodic.cron, periodic.timezone):
        return current.next_run_at
    return periodic.next_after(_now())


def _not_found(name: str) -> ScheduleNotFound:
    return ScheduleNotFound(f"no schedule named {name!r}: see `asyncjobs schedules list`")


def _declared_refused(schedule: Schedule, action: str) -> Schedule:
    if schedule.declared:
        raise ScheduleConflict(
            f"cannot {action} schedule {schedule.name!r}: it is declared in code with "
            "@app.periodic, and workers restore it from the code when they start; change "
            "the code instead (pause, resume and trigger work on it)"
        )
    return schedule


async def sync_declared(conn: Connection, sql: Queries, declared: Mapping[str, Periodic]) -> None:
    """Bring the stored schedules in step with those declared in the app's code.

    Runs when a worker starts. New declarations are added; changed ones are updated (a new
    cron or time zone restarts from now; the paused state and history stay); schedules
    declared in code that the code no longer has are deleted. Schedules added at run time
    are left alone, unless the code declares one of the same name, which then takes it over.
    """
    async with conn.transaction():
        await conn.execute(sql.lock_schedules_sync)
        stored = {
            row["name"]: Schedule.from_row(row)
            for row in await conn.fetch(sql.list_schedules, None)
        }
        for name, periodic in declared.items():
            old = stored.get(name)
            if old is None:
                await conn.fetch(
                    sql.insert_schedule, *periodic.row(), True, False, periodic.next_after(_now())
                )
                logger.info("schedule %r added from code: %s", name, periodic.cron)
            elif not old.declared or not old.matches(periodic):
                if not old.declared:
                    logger.warning(
                        "schedule %r was added at run time; the declaration in code replaces it",
                        name,
                    )
                await conn.fetch(sql.update_schedule, *periodic.row(), True, _next(old, periodic))
                logger.info("schedule %r updated from code: %s", name, periodic.cron)
        gone = sorted(n for n, s in stored.items() if s.declared and n not in declared)
        if gone:
            await conn.fetch(sql.delete_schedules, gone)
            logger.info("schedules no longer declared in code, removed: %s", ", ".join(gone))
