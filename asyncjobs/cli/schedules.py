"""`asyncjobs schedules ...`: list, add, update, pause, resume, trigger and remove
recurring jobs from the command line."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

import click
import orjson

from ..app import App
from ..client.client import Client
from ..errors import AsyncJobsError
from ..schedule import MISSED_POLICIES, Schedule, define, time_zone
from .common import app_options, json_argument, load_app, make_app, no_such_task, run


@click.group()
def schedules() -> None:
    """Recurring jobs: list, add, update, pause, resume, trigger and remove schedules.

    Schedules declared in code with @app.periodic are stored by workers when they start;
    change those in the code (pause, resume and trigger work on them here).
    """


def _json_value(text: str | None, hint: str, kind: type) -> Any:
    return None if text is None else json_argument(text, hint, kind)


def _client_app(dsn: str | None, schema: str | None, app_spec: str | None) -> App:
    """The app to connect with; with --app, it knows that app's tasks (to check arguments)."""
    if app_spec is None:
        return make_app(dsn, schema)
    defined = load_app(app_spec)
    app = make_app(dsn, schema, like=defined)
    app.tasks.update(defined.tasks)
    return app


def _schedule_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(
        [
            click.option("--timezone", default=None, help="IANA time zone of CRON [UTC]."),
            click.option(
                "--missed",
                default=None,
                type=click.Choice(MISSED_POLICIES),
                help="A late tick (no worker was up): run one job (once), or drop it (skip) "
                "[once].",
            ),
            click.option("--queue", default=None, help="Queue [the task's]."),
            click.option("--priority", default=None, type=int, help="Priority [the task's]."),
            click.option(
                "--max-attempts",
                default=None,
                type=click.IntRange(min=1),
                help="Attempts per job [the task's].",
            ),
            click.option(
                "--timeout",
                default=None,
                type=click.FloatRange(min=0, min_open=True),
                help="Seconds per attempt [the task's].",
            ),
        ]
    ):
        fn = option(fn)
    return fn


def _when(schedule: Schedule) -> str:
    """When the schedule runs next, in its own time zone."""
    try:
        local = schedule.next_run_at.astimezone(time_zone(schedule.timezone))
    except AsyncJobsError:
        local = schedule.next_run_at
    return local.isoformat(timespec="seconds")


def _describe(schedule: Schedule) -> str:
    state = "paused" if schedule.paused else f"next run {_when(schedule)}"
    return f"schedule {schedule.name!r} ({schedule.cron} {schedule.timezone}): {state}"


@schedules.command("list")
@app_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per line.")
def schedules_list(dsn: str | None, schema: str | None, as_json: bool) -> None:
    """List every schedule: when it runs next, and whether code or a person added it."""
    app = make_app(dsn, schema)

    async def main() -> list[Schedule]:
        async with app.client() as client:
            return await client.schedules.list()

    found = run(main)
    if as_json:
        for schedule in found:
            click.echo(orjson.dumps(schedule, default=str).decode())
        return
    if not found:
        click.echo("no schedules")
        return
    click.echo(f"{'NAME':<24}  {'CRON':<16}  {'TIMEZONE':<16}  {'NEXT RUN':<25}  SOURCE   TASK")
    for s in found:
        when = "paused" if s.paused else _when(s)
        source = "code" if s.declared else "runtime"
        click.echo(
            f"{s.name:<24}  {s.cron:<16}  {s.timezone:<16}  {when:<25}  {source:<7}  {s.task}"
        )


@schedules.command("add")
@app_options
@click.argument("name")
@click.argument("task")
@click.argument("cron")
@click.argument("args", required=False, default="[]")
@click.option("--kwargs", "kwargs_json", default="{}", help="Keyword arguments as a JSON object.")
@click.option(
    "--app",
    "app_spec",
    required=True,
    metavar="MODULE:APP",
    help="The App that has TASK: its options are the defaults and ARGS are checked against it.",
)
@_schedule_options
@click.option("--paused", is_flag=True, help="Store it paused: it ticks after `resume`.")
def schedules_add(
    *,
    dsn: str | None,
    schema: str | None,
    name: str,
    task: str,
    cron: str,
    args: str,
    kwargs_json: str,
    app_spec: str,
    paused: bool,
    **options: Any,
) -> None:
    """Add schedule NAME: a job of TASK with ARGS (a JSON array) at every tick of CRON.

    \b
    CRON has 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds first.
    Example:
      asyncjobs schedules add nightly-report myproject.tasks.report '0 3 * * *' \\
          '["pdf"]' --timezone Europe/Paris --app myproject.tasks:app
    """
    app = _client_app(dsn, schema, app_spec)
    found = app.tasks.get(task)
    if found is None:
        raise no_such_task(app_spec, task, app)
    positional = _json_value(args, "ARGS", list)
    keywords = _json_value(kwargs_json, "--kwargs", dict)
    given = {k: v for k, v in options.items() if v is not None}
    try:
        # Checked here too, so that bad input is a usage error found before connecting.
        define(name, found, cron, args=positional, kwargs=keywords, **given)
    except (AsyncJobsError, TypeError) as exc:
        raise click.BadParameter(str(exc)) from exc

    async def main() -> Schedule:
        async with app.client() as client:
            return await client.schedules.add(
                name, found, cron, args=positional, kwargs=keywords, paused=paused, **given
            )

    click.echo(f"{_describe(run(main))}: added")


@schedules.command("update")
@app_options
@click.argument("name")
@click.option("--cron", default=None, help="A new cron expression (the next run is recomputed).")
@click.option("--args", "args_json", default=None, help="New positional arguments (JSON array).")
@click.option("--kwargs", "kwargs_json", default=None, help="New keyword arguments (JSON object).")
@click.option(
    "--app",
    "app_spec",
    default=None,
    metavar="MODULE:APP",
    help="The App that has the task: needed to change its arguments.",
)
@_schedule_options
def schedules_update(
    *,
    dsn: str | None,
    schema: str | None,
    name: str,
    cron: str | None,
    args_json: str | None,
    kwargs_json: str | None,
    app_spec: str | None,
    **options: Any,
) -> None:
    """Change schedule NAME (added at run time); what is not given stays as it is."""
    app = _client_app(dsn, schema, app_spec)
    positional = _json_value(args_json, "--args", list)
    keywords = _json_value(kwargs_json, "--kwargs", dict)
    given = {k: v for k, v in options.items() if v is not None}

    async def main() -> Schedule:
        async with app.client() as client:
            return await client.schedules.update(
                name, cron=cron, args=positional, kwargs=keywords, **given
            )

    click.echo(f"{_describe(run(main))}: updated")


def _named_command(fn: Callable[..., Awaitable[str]]) -> Callable[..., None]:
    """A command on one schedule NAME: runs `fn(client, name)` and prints what it returns."""

    @app_options
    @click.argument("name")
    @functools.wraps(fn)
    def command(dsn: str | None, schema: str | None, name: str) -> None:
        app = make_app(dsn, schema)

        async def main() -> str:
            async with app.client() as client:
                return await fn(client, name)

        click.echo(run(main))

    return command


@schedules.command("remove")
@_named_command
async def schedules_remove(client: Client, name: str) -> str:
    """Remove schedule NAME (added at run time); jobs it enqueued stay."""
    await client.schedules.remove(name)
    return f"schedule {name!r} removed"


@schedules.command("pause")
@_named_command
async def schedules_pause(client: Client, name: str) -> str:
    """Pause schedule NAME: no ticks until `resume` (a worker restart keeps it paused)."""
    return _describe(await client.schedules.pause(name))


@schedules.command("resume")
@_named_command
async def schedules_resume(client: Client, name: str) -> str:
    """Resume schedule NAME from its next tick; ticks that fell while paused don't run."""
    return _describe(await client.schedules.resume(name))


@schedules.command("trigger")
@_named_command
async def schedules_trigger(client: Client, name: str) -> str:
    """Enqueue schedule NAME's job now (its ticks go on as before); print the job's id."""
    return str(await client.schedules.trigger(name))
