"""The `asyncjobs` command: run workers, migrate, enqueue, inspect and control jobs."""

from __future__ import annotations

import dataclasses
import datetime
import functools
import logging
import os
import re
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NoReturn

import anyio
import click
import orjson

from .. import validation
from ..app import App
from ..db.sql import validate_schema
from ..errors import AsyncJobsError
from ..job import Job, JobState, QueueInfo
from ..retention import DAY, Retention
from ..tasks import JobOptions, Task, TaskCall, validate_task_name
from ..validation import INT64
from ..worker.settings import MAX_HAND_OFF_AFTER, WorkerSettings
from ..worker.worker import Worker
from .common import app_options, fail, json_argument, load_app, make_app, no_such_task, run
from .schedules import schedules

if TYPE_CHECKING:
    from ..app import App
    from ..observability.prometheus import PrometheusMetrics

# The defaults the worker command shows, and gives when an option is left out.
_DEFAULTS = WorkerSettings()


@dataclasses.dataclass(frozen=True)
class _Keep:
    """A parsed --keep-* value: seconds, or None for forever."""

    seconds: float | None


class _Duration(click.ParamType):  # type: ignore[type-arg]  # generic from click 8.2; we allow 8.1
    """90, 90s, 30m, 12h, 7d, or forever."""

    name = "duration"
    _FORM = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")
    _UNITS: ClassVar[dict[str, float]] = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": DAY}

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, _Keep):
            return value
        text = str(value).strip().lower()
        if text == "forever":
            return _Keep(None)
        match = self._FORM.fullmatch(text)
        if match is None:
            self.fail(f"{value!r} is not a duration: use e.g. 90s, 30m, 12h, 7d or forever")
        return _Keep(float(match[1]) * self._UNITS[match[2]])


_DURATION = _Duration()


class _Seconds(click.ParamType):  # type: ignore[type-arg]  # generic from click 8.2; we allow 8.1
    """A finite number of seconds, >= 0 (or > 0): NaN, inf and negatives are refused."""

    name = "seconds"

    def __init__(self, *, positive: bool = False) -> None:
        self._positive = positive

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, float):
            return value
        label = param.opts[0] if param is not None and param.opts else "the value"
        try:
            number = float(value)
        except ValueError:
            self.fail(f"{value!r} is not a number of seconds")
        try:
            return validation.seconds(label, number, zero=not self._positive)
        except AsyncJobsError as exc:
            self.fail(str(exc))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--log-level",
    default="INFO",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    help="Logging level.",
)
@click.option(
    "--log-format",
    default="text",
    type=click.Choice(["text", "json"]),
    help="text lines, or one JSON object per line (with job id, task, queue, attempt, "
    "outcome, duration and trace id on each attempt's line).",
)
def cli(log_level: str, log_format: str) -> None:
    """asyncjobs: background jobs on PostgreSQL that stop the moment you ask."""
    if log_format == "json":
        from ..observability.logs import JsonFormatter

        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
        logging.basicConfig(level=log_level.upper(), handlers=[handler])
        return
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


cli.add_command(schedules)


@cli.command()
@click.argument("app_spec", metavar="MODULE:APP")
@click.option(
    "-c",
    "--concurrency",
    default=_DEFAULTS.concurrency,
    show_default=True,
    type=click.IntRange(min=1),
    help="Jobs run at once.",
)
@click.option("-q", "--queues", default=None, help="Comma-separated queues [the app's tasks'].")
@click.option(
    "--grace",
    default=_DEFAULTS.grace,
    show_default=True,
    type=_Seconds(),
    help="Seconds running jobs get to finish on SIGTERM/SIGINT before they are requeued.",
)
@click.option(
    "--poll-interval",
    default=_DEFAULTS.poll_interval,
    show_default=True,
    type=_Seconds(positive=True),
    help="Fallback poll, seconds.",
)
@click.option(
    "--heartbeat-interval",
    default=_DEFAULTS.heartbeat_interval,
    show_default=True,
    type=_Seconds(positive=True),
    help="Seconds between heartbeats (which also catch a missed stop broadcast).",
)
@click.option(
    "--keep-succeeded",
    type=_DURATION,
    default=None,
    help="Delete succeeded jobs this long after they finish, e.g. 90s, 30m, 12h, 1d, "
    "forever [the app's, else 1d].",
)
@click.option(
    "--keep-failed",
    type=_DURATION,
    default=None,
    help="The same for failed jobs [the app's, else 7d].",
)
@click.option(
    "--keep-cancelled",
    type=_DURATION,
    default=None,
    help="The same for cancelled jobs [the app's, else 1d].",
)
@click.option(
    "--prune-interval",
    type=_Seconds(positive=True),
    default=None,
    help="Seconds between prune rounds [the app's, else 60].",
)
@click.option("--no-prune", is_flag=True, help="This worker deletes no finished jobs.")
@click.option(
    "--claim-sessions",
    default=None,
    type=click.IntRange(min=1),
    help="Sessions holding claims [concurrency, at most 10]; more jobs share them.",
)
@click.option(
    "--hand-off-after",
    default=_DEFAULTS.hand_off_after,
    show_default=True,
    type=click.FloatRange(min=0, max=MAX_HAND_OFF_AFTER),
    help="Seconds a job runs under its claim before it moves to the worker's lease.",
)
@click.option(
    "--metrics-port",
    default=None,
    type=click.IntRange(min=0, max=65535),
    help="Serve Prometheus metrics on this port at /metrics (needs asyncjobs[prometheus]).",
)
@click.option(
    "--metrics-host", default="0.0.0.0", show_default=True, help="Address of --metrics-port."
)
@click.option("--dsn", default=None, help="PostgreSQL DSN, instead of the app's.")
@click.option("--schema", default=None, help="Schema, instead of the app's.")
def worker(
    *,
    app_spec: str,
    concurrency: int,
    queues: str | None,
    grace: float,
    poll_interval: float,
    heartbeat_interval: float,
    keep_succeeded: _Keep | None,
    keep_failed: _Keep | None,
    keep_cancelled: _Keep | None,
    prune_interval: float | None,
    no_prune: bool,
    claim_sessions: int | None,
    hand_off_after: float,
    metrics_port: int | None,
    metrics_host: str,
    dsn: str | None,
    schema: str | None,
) -> None:
    """Run a worker for the App at MODULE:APP until SIGTERM or SIGINT.

    The first signal stops taking jobs and gives running ones --grace seconds; a second
    signal requeues them at once. Jobs still running at the end are queued again without
    spending an attempt. `asyncjobs workers stop` stops every worker the same way. A sync
    job's thread still running after a second signal is left to the process's exit: its
    claim rolls back and the job runs again, that attempt counted as lost.

    An unreachable or restarting PostgreSQL is retried with backoff, each failure logged.
    An invalid DSN, a database that doesn't exist or a failed authentication exits at once
    with status 1 and one line saying so.

    Finished jobs older than --keep-* (else the app's retention) are deleted by one worker
    at a time; --no-prune leaves that to other workers.
    """
    app = load_app(app_spec)
    if dsn is not None:
        app.dsn = dsn
    if schema is not None:
        try:
            app.schema = validate_schema(schema)
        except AsyncJobsError as exc:
            raise click.BadParameter(str(exc), param_hint="--schema") from exc
    queue_list = [q.strip() for q in queues.split(",") if q.strip()] if queues else None
    base = app.retention or Retention()
    ages_given = any(v is not None for v in (keep_succeeded, keep_failed, keep_cancelled))
    try:
        retention = Retention(
            succeeded=base.succeeded if keep_succeeded is None else keep_succeeded.seconds,
            failed=base.failed if keep_failed is None else keep_failed.seconds,
            cancelled=base.cancelled if keep_cancelled is None else keep_cancelled.seconds,
            interval=base.interval if prune_interval is None else prune_interval,
            batch_size=base.batch_size,
        )
        settings = WorkerSettings(
            concurrency=concurrency,
            queues=queue_list,
            grace=grace,
            poll_interval=poll_interval,
            heartbeat_interval=heartbeat_interval,
            retention=retention,
            # An app that keeps jobs forever prunes only when told how long to keep them.
            prune=not no_prune and (app.retention is not None or ages_given),
            claim_sessions=claim_sessions,
            hand_off_after=hand_off_after,
        )
    except AsyncJobsError as exc:
        raise click.BadParameter(str(exc)) from exc
    runner = Worker(app, settings)
    metrics = _serve_metrics(app, metrics_port, metrics_host) if metrics_port is not None else None

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_stop_on_signals, runner)
            await runner.run(exits_when_forced=True)
            tg.cancel_scope.cancel()

    try:
        run(main)
    finally:
        if metrics is not None:
            metrics.close()
    if runner.abandoned:
        _exit_leaving_threads(runner)


def _serve_metrics(app: App, port: int, host: str) -> PrometheusMetrics:
    """Count the app's jobs and serve them on host:port before the worker starts (a port
    in use fails the command at once)."""
    try:
        from ..observability.prometheus import PrometheusMetrics
    except ImportError as exc:
        raise click.UsageError(
            f"--metrics-port needs prometheus-client: pip install 'asyncjobs[prometheus]' ({exc})"
        ) from exc
    metrics = PrometheusMetrics().install(app)
    try:
        metrics.serve(port, host)
    except OSError as exc:
        raise click.UsageError(f"cannot serve metrics on {host}:{port}: {exc}") from exc
    return metrics


def _exit_leaving_threads(runner: Worker) -> NoReturn:
    """End the process now, with sync jobs' threads still running: their claims roll back
    as its connections drop, so no other worker can start them before their code stops.
    (A normal exit would wait for the threads.)"""
    logging.getLogger("asyncjobs.worker").warning(
        "worker %s: exiting with the threads of sync jobs %s still running; they will run "
        "again (this attempt counts as lost)",
        runner.id,
        sorted(job.id for job in runner.abandoned),
    )
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


async def _stop_on_signals(runner: Worker) -> None:
    log = logging.getLogger("asyncjobs.worker")
    received = 0
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            # Only a second signal forces: a stop broadcast seen first is not a signal.
            received += 1
            action = "requeueing running jobs now" if received > 1 else "stopping"
            log.info("%s: %s", signal.Signals(signum).name, action)
            runner.stop(force=received > 1)


@cli.command()
@app_options
def migrate(dsn: str | None, schema: str | None) -> None:
    """Create or upgrade the asyncjobs schema (safe to run from many machines at once)."""
    app = make_app(dsn, schema)
    applied = run(app.migrate)
    if applied:
        versions = ", ".join(str(v) for v in applied)
        click.echo(f"schema {app.schema!r}: applied migration{_s(applied)} {versions}")
    else:
        click.echo(f"schema {app.schema!r} is up to date")


def _s(items: Any) -> str:
    count = items if isinstance(items, int) else len(items)
    return "" if count == 1 else "s"


@cli.command()
@app_options
@click.argument("task")
@click.argument("args", required=False, default="[]")
@click.option("--kwargs", "kwargs_json", default="{}", help="Keyword arguments as a JSON object.")
@click.option(
    "--app",
    "app_spec",
    default=None,
    metavar="MODULE:APP",
    help="Take TASK's options from this App and check the arguments against its signature.",
)
@click.option("--queue", default=None, help="Queue [the task's, else default].")
@click.option("--priority", default=None, type=int, help="Priority [the task's, else 0].")
@click.option(
    "--delay", default=None, type=click.FloatRange(min=0), help="Run it this many seconds from now."
)
@click.option(
    "--max-attempts",
    default=None,
    type=click.IntRange(min=1),
    help="Attempts before it fails [the task's, else 3].",
)
@click.option(
    "--unique-key",
    default=None,
    help="While a job of TASK with this key is active, print its id instead of enqueueing.",
)
@click.option(
    "--on-duplicate",
    default="existing",
    show_default=True,
    type=click.Choice(["existing", "raise"]),
    help="With --unique-key: print the active job's id, or fail.",
)
@click.option(
    "--after",
    "after",
    multiple=True,
    type=click.IntRange(min=1),
    metavar="JOB_ID",
    help="Run only after this job succeeded (repeat for several).",
)
@click.option(
    "--on-parent-failure",
    default="cancel",
    show_default=True,
    type=click.Choice(["cancel", "run"]),
    help="With --after: when a parent fails, is cancelled or deleted, cancel or run anyway.",
)
@click.option(
    "--allow-unknown-task",
    is_flag=True,
    help="Enqueue TASK even if no worker has ever had a task of that name (workers not "
    "deployed yet).",
)
def enqueue(
    *,
    dsn: str | None,
    schema: str | None,
    task: str,
    args: str,
    kwargs_json: str,
    app_spec: str | None,
    queue: str | None,
    priority: int | None,
    delay: float | None,
    max_attempts: int | None,
    unique_key: str | None,
    on_duplicate: Literal["existing", "raise"],
    after: tuple[int, ...],
    on_parent_failure: Literal["cancel", "run"],
    allow_unknown_task: bool,
) -> None:
    """Enqueue a job of TASK (its stored name) with ARGS, a JSON array; print its id.

    \b
    Example:
      asyncjobs enqueue myproject.tasks.send_email '["a@example.com"]' \\
          --kwargs '{"subject": "hi"}' --app myproject.tasks:app

    Without --app the task's code is not needed here: the job gets the options given on
    the command line, else those its workers recorded for TASK as they started (its queue,
    priority, attempts, timeout). TASK must then be a name some worker on the schema has had
    (close matches are suggested), unless --allow-unknown-task (an unknown TASK then gets
    queue default, priority 0, 3 attempts).
    """
    positional = json_argument(args, "ARGS", list)
    keywords = json_argument(kwargs_json, "--kwargs", dict)
    if app_spec is None:
        app = make_app(dsn, schema)
        try:
            # On an App of its own: the client's app must not have it, or its name would
            # pass the check of known names.
            named = App().task(name=validate_task_name(task))(_unknown_function)
        except AsyncJobsError as exc:
            raise click.BadParameter(str(exc), param_hint="TASK") from exc
    else:
        defined = load_app(app_spec)
        found = defined.tasks.get(task)
        if found is None:
            raise no_such_task(app_spec, task, defined)
        named = found
        app = make_app(dsn, schema, like=defined)

    def given(base: Task[Any, Any]) -> TaskCall[Any]:
        """The call of `base` with the options given on the command line."""
        try:
            return base.options(
                queue=queue,
                priority=priority,
                max_attempts=max_attempts,
                delay=delay,
                unique_key=unique_key,
                on_duplicate=on_duplicate,
                after=after or None,
                on_parent_failure=on_parent_failure,
            ).call(*positional, **keywords)
        except (AsyncJobsError, TypeError) as exc:
            raise click.BadParameter(str(exc)) from exc

    call = given(named)  # checked before connecting

    async def main() -> int:
        async with app.client() as client:
            job = call
            if app_spec is None:
                if not allow_unknown_task:
                    await client.check_task_name(task)
                recorded = await client.task_options(task)
                if recorded is not None:
                    job = given(named.options(**_recorded_defaults(recorded)))
            (job_id,) = await client.enqueue_many([job])
            return job_id

    click.echo(run(main))


def _recorded_defaults(options: JobOptions) -> dict[str, Any]:
    """A task's default options as its workers recorded them."""
    return {
        "queue": options.queue,
        "priority": options.priority,
        "max_attempts": options.max_attempts,
        "timeout": options.timeout,
    }


def _unknown_function(*args: Any, **kwargs: Any) -> None:
    """Stands in for a task whose code this process doesn't have: accepts any arguments."""


@cli.group()
def jobs() -> None:
    """Inspect and control jobs."""


def _job_command(fn: Callable[..., Awaitable[Any]]) -> Callable[..., None]:
    @app_options
    @click.argument("job_id", type=click.IntRange(min=1, max=INT64 - 1))
    @functools.wraps(fn)
    def command(dsn: str | None, schema: str | None, job_id: int, **options: Any) -> None:
        app = make_app(dsn, schema)

        async def main() -> None:
            async with app.client() as client:
                await fn(client, job_id, **options)

        run(main)

    return command


def _job_json(job: Job[Any]) -> str:
    return orjson.dumps(job, default=str, option=orjson.OPT_INDENT_2).decode()


def _show(job: Job[Any]) -> None:
    def when(value: datetime.datetime | None) -> str:
        return value.isoformat(timespec="milliseconds") if value else "-"

    click.echo(f"job {job.id}: {job.task} on {job.queue} (priority {job.priority})")
    click.echo(f"  state     {job.state.value}, attempt {job.attempt} of {job.max_attempts}")
    click.echo(f"  args      {_json_text(job.args)} {_json_text(job.kwargs)}")
    if job.timeout is not None:
        click.echo(f"  timeout   {job.timeout:g}s")
    if job.unique_key is not None:
        click.echo(f"  unique    {job.unique_key}")
    if job.parents:
        click.echo(f"  after     {', '.join(str(p) for p in job.parents)}")
    click.echo(f"  created   {when(job.created_at)}")
    click.echo(f"  run at    {when(job.run_at)}")
    click.echo(f"  started   {when(job.started_at)}")
    click.echo(f"  finished  {when(job.finished_at)}")
    if job.worker_id:
        click.echo(f"  worker    {job.worker_id}")
    if job.progress is not None:
        message = f" {job.progress_message}" if job.progress_message else ""
        click.echo(f"  progress  {job.progress:.0%}{message}")
    if job.checkpoint is not None:
        saved = when(job.checkpoint_at)
        click.echo(f"  checkpoint {_shortened(_json_text(job.checkpoint))} (saved {saved})")
    if job.result is not None:
        click.echo(f"  result    {_json_text(job.result)}")
    for line in job.log:
        click.echo(
            f"  log       {line.get('at')} attempt {line.get('attempt')}: {line.get('message')}"
        )
    for error in job.errors:
        click.echo(
            f"  error     attempt {error.get('attempt')}: {error.get('type')}: "
            f"{error.get('message')}"
        )
    if job.error and job.error not in job.errors:
        # Not an attempt's error: e.g. why a continuation was cancelled.
        click.echo(f"  reason    {job.error.get('type')}: {job.error.get('message')}")


# A checkpoint can be up to 1 MiB: `jobs show --json` prints it whole.
_SHOWN_CHARS = 200


def _shortened(text: str) -> str:
    if len(text) <= _SHOWN_CHARS:
        return text
    return f"{text[:_SHOWN_CHARS]}... ({len(text)} characters; --json shows it whole)"


def _json_text(value: Any) -> str:
    # A value read back as text (JSON orjson can't read) is shown as that text.
    if isinstance(value, str):
        return value
    try:
        return orjson.dumps(value).decode()
    except (orjson.JSONEncodeError, TypeError):
        return repr(value)


@jobs.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
@click.option("--traceback", "tracebacks", is_flag=True, help="Print each error's traceback.")
@_job_command
async def jobs_show(client: Any, job_id: int, as_json: bool, tracebacks: bool) -> None:
    """Show one job: state, attempts, progress, log, result, every attempt's error."""
    job = await client.get(job_id)
    if as_json:
        click.echo(_job_json(job))
        return
    _show(job)
    if tracebacks:
        for error in job.errors:
            if error.get("traceback"):
                click.echo(f"\nattempt {error.get('attempt')}:\n{error['traceback'].rstrip()}")


@jobs.command("cancel")
@_job_command
async def jobs_cancel(client: Any, job_id: int) -> None:
    """Cancel a job; if it is running, it stops at once."""
    if await client.cancel(job_id):
        click.echo(f"job {job_id} cancelled")
    else:
        state = (await client.get(job_id)).state.value
        click.echo(f"job {job_id} had already finished ({state}): nothing to cancel")


@jobs.command("requeue")
@click.option(
    "--keep-checkpoint",
    is_flag=True,
    help="Keep the job's checkpoint: it resumes from there instead of starting over.",
)
@_job_command
async def jobs_requeue(client: Any, job_id: int, keep_checkpoint: bool) -> None:
    """Run a job again from its first attempt; a running attempt stops at once. It starts
    from scratch unless --keep-checkpoint."""
    await client.requeue(job_id, keep_checkpoint=keep_checkpoint)
    kept = ", resuming from its checkpoint" if keep_checkpoint else ""
    click.echo(f"job {job_id} requeued{kept}")


@jobs.command("delete")
@_job_command
async def jobs_delete(client: Any, job_id: int) -> None:
    """Delete a job; if it is running, it stops at once."""
    await client.delete(job_id)
    click.echo(f"job {job_id} deleted")


@jobs.command("list")
@app_options
@click.option(
    "--state",
    default=None,
    type=click.Choice([s.value for s in JobState]),
    help="Only jobs in this state.",
)
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1, max=INT64 - 1))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per line.")
def jobs_list(
    dsn: str | None, schema: str | None, state: str | None, limit: int, as_json: bool
) -> None:
    """List the newest jobs."""
    app = make_app(dsn, schema)

    async def main() -> None:
        async with app.client() as client:
            found = await client.list_jobs(state, limit)
        if as_json:
            for job in found:
                click.echo(orjson.dumps(job, default=str).decode())
            return
        if not found:
            click.echo(f"no {state} jobs" if state else "no jobs")
            return
        click.echo(f"{'ID':>8}  {'STATE':<10}  {'TRIES':<5}  {'QUEUE':<12}  TASK")
        for job in found:
            tries = f"{job.attempt}/{job.max_attempts}"
            click.echo(
                f"{job.id:>8}  {job.state.value:<10}  {tries:<5}  {job.queue:<12}  {job.task}"
            )

    run(main)


@cli.group()
def workers() -> None:
    """See and stop running workers."""


@workers.command("list")
@app_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per line.")
def workers_list(dsn: str | None, schema: str | None, as_json: bool) -> None:
    """List running workers (and those that died in the last minute).

    The running count is as of each worker's last heartbeat (every 10 s by default).
    """
    app = make_app(dsn, schema)

    async def main() -> None:
        async with app.client() as client:
            found = await client.workers()
        if as_json:
            for w in found:
                click.echo(orjson.dumps(w, default=str).decode())
            return
        if not found:
            click.echo("no workers")
        for w in found:
            state = "stopping" if w.stop_requested_at else "running"
            click.echo(
                f"{w.id}  {w.host}:{w.pid}  {state}  {w.running}/{w.concurrency} jobs"
                f"  queues {','.join(w.queues)}"
                f"  heartbeat {w.heartbeat_at.isoformat(timespec='seconds')}"
            )

    run(main)


@workers.command("stop")
@app_options
@click.option(
    "--grace",
    default=0.0,
    show_default=True,
    type=_Seconds(),
    help="Seconds running jobs get to finish before they are requeued.",
)
def workers_stop(dsn: str | None, schema: str | None, grace: float) -> None:
    """Stop every running worker, on every machine (e.g. before a deploy).

    Each takes no new jobs, gives running ones --grace seconds, then queues the rest
    again (attempt not counted) and exits.
    """
    app = make_app(dsn, schema)

    async def main() -> int:
        async with app.client() as client:
            return await client.stop_workers(grace)

    stopped = run(main)
    click.echo(f"asked {stopped} worker{_s(stopped)} to stop")


@cli.group()
def queues() -> None:
    """See queues; pause and resume them."""


@queues.command("list")
@app_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per line.")
def queues_list(dsn: str | None, schema: str | None, as_json: bool) -> None:
    """List queues: unfinished jobs by state, running, paused, the oldest due job's wait."""
    app = make_app(dsn, schema)

    async def main() -> list[QueueInfo]:
        async with app.client() as client:
            return await client.queues()

    found = run(main)
    if as_json:
        for q in found:
            click.echo(orjson.dumps(q, default=str).decode())
        return
    if not found:
        click.echo("no queues")
        return
    click.echo(
        f"{'QUEUE':<16}  {'STATE':<7}  {'QUEUED':>7}  {'SCHED':>7}  {'AWAIT':>7}  "
        f"{'RUNNING':>7}  {'WORKERS':>7}  OLDEST WAIT"
    )
    for q in found:
        wait = "-" if q.oldest_wait is None else f"{q.oldest_wait:.1f}s"
        click.echo(
            f"{q.name:<16}  {'paused' if q.paused else 'active':<7}  {q.queued:>7}  "
            f"{q.scheduled:>7}  {q.awaiting:>7}  {q.processing:>7}  {q.workers:>7}  {wait}"
        )


def _queue_command(pause: bool) -> Callable[..., None]:
    @app_options
    @click.argument("name")
    def command(dsn: str | None, schema: str | None, name: str) -> None:
        app = make_app(dsn, schema)

        async def main() -> bool:
            async with app.client() as client:
                if pause:
                    return await client.pause_queue(name)
                return await client.resume_queue(name)

        changed = run(main)
        if pause:
            click.echo(f"queue {name} paused" if changed else f"queue {name} was paused already")
        else:
            click.echo(f"queue {name} resumed" if changed else f"queue {name} was not paused")

    return command


queues.command(
    "pause",
    help="Pause a queue: no worker claims its jobs until it is resumed (running ones finish).",
)(_queue_command(pause=True))
queues.command("resume", help="Resume a paused queue: its workers start its jobs at once.")(
    _queue_command(pause=False)
)


@cli.command()
@click.argument("app_spec", metavar="MODULE:APP", required=False)
@app_options
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(1, 65535))
@click.option("--read-only", is_flag=True, help="Refuse every action: look, don't touch.")
def dashboard(
    app_spec: str | None,
    *,
    dsn: str | None,
    schema: str | None,
    host: str,
    port: int,
    read_only: bool,
) -> None:
    """Serve the web dashboard (needs `pip install asyncjobs[dashboard]`).

    It answers local clients only: to open it to others, mount `app.dashboard(auth=...)`
    in your own ASGI app. MODULE:APP gives the app (its DSN and schema); else the DSN and
    schema options or ASYNCJOBS_DSN and ASYNCJOBS_SCHEMA.
    """
    try:
        import uvicorn
    except ImportError:
        fail("the dashboard needs its extra: pip install 'asyncjobs[dashboard]'")
    app = load_app(app_spec) if app_spec else make_app(dsn, schema)
    if app_spec and (dsn or schema):
        app = make_app(dsn or app.dsn, schema or app.schema)
    try:
        board = app.dashboard(read_only=read_only)
    except AsyncJobsError as exc:
        fail(str(exc))
    click.echo(f"asyncjobs dashboard of schema {app.schema!r} on http://{host}:{port}/")
    uvicorn.run(board, host=host, port=port, log_level="warning")


@cli.command()
def demo() -> None:
    """Show asyncjobs at work on an embedded PostgreSQL: jobs flowing, a running job
    cancelled, a killed worker's job picked up by another."""
    from .demo import run_demo

    run(run_demo)


def main() -> None:
    """Entry point of the `asyncjobs` command."""
    cli()
