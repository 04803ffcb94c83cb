"""Recurring jobs: cron expressions in a time zone, a schedule's definition and its record.

Cron expressions are read by cronsim, which follows Debian's cron, including what it does
when a daylight-saving change skips or repeats a local hour (see README, "Recurring jobs").
"""

from __future__ import annotations

import dataclasses
import datetime
import zoneinfo
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from cronsim import CronSim, CronSimError

from . import validation
from .errors import ArgumentsMismatch, ConfigurationError
from .serialization import MAX_ARGUMENTS_BYTES, arguments_too_big, dumps, loads
from .tasks import JobOptions, Task, TaskCall

Missed = Literal["once", "skip"]
MISSED_POLICIES: tuple[Missed, ...] = ("once", "skip")

# With missed="skip", a tick found due more than this late was missed (no worker was up).
MISSED_AFTER = datetime.timedelta(seconds=60)

_MAX_NAME = 200


def validate_name(name: str) -> str:
    """Return `name` if it can name a schedule, else raise ConfigurationError."""
    return validation.text("schedule name", name, most=_MAX_NAME)


def validate_cron(cron: str) -> str:
    """Return `cron` if cronsim can read it, else raise ConfigurationError saying why."""
    validation.text("cron expression", cron, most=1000, hint="; e.g. '*/5 * * * *'")
    try:
        CronSim(cron, datetime.datetime(2000, 1, 1))
    except (CronSimError, ValueError, IndexError) as exc:
        raise ConfigurationError(
            f"invalid cron expression {cron!r} ({exc}): use 5 fields, minute hour "
            "day-of-month month day-of-week (e.g. '*/5 * * * *'), or 6 with seconds first"
        ) from None
    return cron


def time_zone(name: str) -> zoneinfo.ZoneInfo:
    """The IANA time zone `name`, else ConfigurationError."""
    try:
        if not isinstance(name, str) or not name:
            raise ValueError(name)
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigurationError(
            f"unknown time zone {name!r}: use an IANA name such as 'UTC' or 'Europe/Paris'"
        ) from None


def validate_missed(missed: str) -> Missed:
    """Return `missed` if it is a missed-tick policy, else raise ConfigurationError."""
    if missed not in MISSED_POLICIES:
        raise ConfigurationError(
            f"missed must be 'once' (run one job for the ticks missed) or 'skip', got {missed!r}"
        )
    return missed


def next_run(cron: str, timezone: str, after: datetime.datetime) -> datetime.datetime:
    """The first time strictly after `after` that matches `cron` in `timezone`, in UTC.

    Raises ConfigurationError if the expression matches nothing in the next 50 years.
    """
    local = after.astimezone(time_zone(timezone))
    try:
        found = next(CronSim(cron, local))
    except StopIteration:
        raise ConfigurationError(
            f"cron expression {cron!r} matches no time in the next 50 years"
        ) from None
    except (CronSimError, ValueError, IndexError) as exc:
        raise ConfigurationError(f"invalid cron expression {cron!r} ({exc})") from None
    return found.astimezone(datetime.UTC)


@dataclasses.dataclass(frozen=True, slots=True)
class Periodic:
    """A schedule's definition: which job to enqueue (task, arguments, options) and when."""

    name: str
    cron: str
    timezone: str
    missed: Missed
    call: TaskCall[Any]

    def next_after(self, when: datetime.datetime) -> datetime.datetime:
        """The schedule's first tick strictly after `when`."""
        return next_run(self.cron, self.timezone, when)

    def row(self) -> tuple[Any, ...]:
        """The stored columns, in the order of the `insert_schedule` statement."""
        options = self.call.options
        return (
            self.name,
            self.call.task,
            self.cron,
            self.timezone,
            self.call.args.decode(),
            self.call.kwargs.decode(),
            options.queue,
            options.priority,
            options.max_attempts,
            options.timeout,
            self.missed,
        )


def define(
    name: str,
    task: Task[Any, Any],
    cron: str,
    *,
    timezone: str = "UTC",
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    missed: str = "once",
    queue: str | None = None,
    priority: int | None = None,
    max_attempts: int | None = None,
    timeout: float | datetime.timedelta | None = None,
) -> Periodic:
    """Check every part of a schedule and return its definition.

    Raises ConfigurationError (bad name, cron, time zone, policy or option), TypeError
    (arguments that don't fit the task) or SerializationError (arguments that aren't JSON).
    """
    validate_name(name)
    validate_cron(cron)
    time_zone(timezone)
    if isinstance(args, (str, bytes)) or not isinstance(args, Sequence):
        raise ArgumentsMismatch(f"schedule {name!r}: args must be a list or tuple, got {args!r}")
    if kwargs is not None and not isinstance(kwargs, Mapping):
        raise ArgumentsMismatch(f"schedule {name!r}: kwargs must be a dict, got {kwargs!r}")
    configured = task.options(
        queue=queue, priority=priority, max_attempts=max_attempts, timeout=timeout
    )
    try:
        call = configured.call(*args, **(kwargs or {}))
    except ArgumentsMismatch as exc:
        # Task.call's words are an enqueue's; here it is the schedule that is not stored.
        message = str(exc).replace("nothing was enqueued", "the schedule was not stored")
        raise ArgumentsMismatch(f"schedule {name!r}: {message}") from None
    size = len(call.args) + len(call.kwargs)
    if size > MAX_ARGUMENTS_BYTES:  # every tick's job would be refused
        raise arguments_too_big(call.task, size)
    # Tick jobs are due when their tick is: a delay or run_at has no meaning here.
    options = dataclasses.replace(call.options, delay=None, run_at=None)
    periodic = Periodic(
        name=name,
        cron=cron,
        timezone=timezone,
        missed=validate_missed(missed),
        call=call._replace(options=options),
    )
    periodic.next_after(datetime.datetime.now(datetime.UTC))  # matches some time at all
    return periodic


@dataclasses.dataclass(frozen=True, slots=True)
class Schedule:
    """A stored schedule: its definition and when it runs next.

    `declared` is True for a schedule declared in code with `@app.periodic` (a worker
    keeps it in step with the code), False for one added at run time.
    """

    name: str
    task: str
    cron: str
    timezone: str
    args: list[Any]
    kwargs: dict[str, Any]
    queue: str
    priority: int
    max_attempts: int
    timeout: float | None
    missed: Missed
    declared: bool
    paused: bool
    next_run_at: datetime.datetime
    last_run_at: datetime.datetime | None
    last_job_id: int | None
    created_at: datetime.datetime
    updated_at: datetime.datetime

    @classmethod
    def from_row(cls, row: Mapping[str, Any] | Any) -> Schedule:
        """Build from a row of the `schedules` table."""
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in dict(row).items() if k in fields})

    def call(self) -> TaskCall[Any]:
        """The job one tick enqueues."""
        options = JobOptions(
            queue=self.queue,
            priority=self.priority,
            max_attempts=self.max_attempts,
            timeout=self.timeout,
        )
        return TaskCall(self.task, dumps(self.args), dumps(self.kwargs), options)

    def matches(self, periodic: Periodic) -> bool:
        """Whether this stored schedule has exactly `periodic`'s definition."""
        options = periodic.call.options
        return (
            self.task,
            self.cron,
            self.timezone,
            self.args,
            self.kwargs,
            self.queue,
            self.priority,
            self.max_attempts,
            self.timeout,
            self.missed,
        ) == (
            periodic.call.task,
            periodic.cron,
            periodic.timezone,
            loads(periodic.call.args),
            loads(periodic.call.kwargs),
            options.queue,
            options.priority,
            options.max_attempts,
            options.timeout,
            periodic.missed,
        )
