"""What the commands share: the app a command works on (--dsn and --schema, or MODULE:APP),
arguments given as JSON, and running a command's coroutine with its errors as one line."""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, ParamSpec, TypeVar

import anyio
import asyncpg
import click

from ..app import PROJECT_ENV, App
from ..client.task_names import close_matches
from ..db.connections import resolve_dsn
from ..errors import AsyncJobsError

P = ParamSpec("P")
T = TypeVar("T")


def run(main: Callable[[], Awaitable[T]]) -> T:
    """Run `main` on asyncio. An asyncjobs or PostgreSQL error becomes one line on stderr and
    exit 1, Ctrl-C exit 130: no traceback for what the user can act on from the message."""
    try:
        return anyio.run(main)
    except BaseException as raised:
        exc = _leaf(raised)
        if isinstance(exc, click.ClickException):
            raise exc from None
        if isinstance(exc, AsyncJobsError):
            fail(str(exc))
        if isinstance(exc, asyncpg.PostgresError):
            fail(f"PostgreSQL: {exc}")
        if isinstance(exc, asyncpg.InterfaceError):
            fail(f"lost the connection to PostgreSQL: {exc}")
        if isinstance(exc, KeyboardInterrupt):
            click.echo("interrupted", err=True)
            sys.exit(130)
        raise


def _leaf(exc: BaseException) -> BaseException:
    """The one exception inside (nested) single-exception groups, else `exc` itself."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def fail(message: str) -> NoReturn:
    click.echo(f"error: {' '.join(message.split())}", err=True)
    sys.exit(1)


_PROJECT = "asyncjobs.project"


def _remember_project(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.meta[_PROJECT] = value


def app_options(fn: Callable[P, T]) -> Callable[P, T]:
    fn = click.option(
        "--project",
        envvar=PROJECT_ENV,
        default=None,
        expose_value=False,
        callback=_remember_project,
        help="On the embedded PostgreSQL: the project whose database to use (its App's "
        "name: by default the module that makes the App) [$ASYNCJOBS_PROJECT].",
    )(fn)
    fn = click.option(
        "--schema", envvar="ASYNCJOBS_SCHEMA", default=None, help="Schema [$ASYNCJOBS_SCHEMA]."
    )(fn)
    fn = click.option(
        "--dsn",
        envvar="ASYNCJOBS_DSN",
        default=None,
        help="PostgreSQL DSN [$ASYNCJOBS_DSN]; without one, the embedded PostgreSQL.",
    )(fn)
    return fn


def make_app(dsn: str | None, schema: str | None, like: App | None = None) -> App:
    """The App of a command: the DSN and schema given (else those of `like`, an app the
    command loaded), and on the embedded PostgreSQL the project given, else `like`'s."""
    ctx = click.get_current_context(silent=True)
    project = ctx.meta.get(_PROJECT) if ctx is not None else None
    if like is not None:
        dsn, schema, project = dsn or like.dsn, schema or like.schema, project or like.name
    if project is None and resolve_dsn(dsn) is None:
        raise click.UsageError(
            "on the embedded PostgreSQL each project has its own database: say which with "
            "--project NAME or $ASYNCJOBS_PROJECT (its App's name: App(name=...), else the "
            "module that makes the App, e.g. myproject.tasks), or pass --app MODULE:APP "
            "where the command takes it"
        )
    try:
        return App(dsn, schema=schema, name=project or "asyncjobs")
    except AsyncJobsError as exc:
        raise click.BadParameter(str(exc)) from exc


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON: pass a finite number, null, or a string")


def json_argument(text: str, hint: str, kind: type) -> Any:
    """Command-line JSON of `kind` (list or dict), or a usage error. Read by the standard
    library, not orjson: orjson turns an integer past 64 bits into a float, which would be
    stored changed; kept as an int, it is refused by name when the job is made."""
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint=hint) from None
    if not isinstance(value, kind):
        example = "'[1, \"a\"]'" if kind is list else "'{\"a\": 1}'"
        name = "array" if kind is list else "object"
        raise click.BadParameter(f"must be a JSON {name}, e.g. {example}", param_hint=hint)
    return value


def load_app(spec: str) -> App:
    """Import `module:attribute` and return the App it names."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise click.BadParameter(f"{spec!r} is not MODULE:APP (e.g. myproject.tasks:app)")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise click.BadParameter(f"cannot import {module_name!r}: {exc}") from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise click.BadParameter(f"module {module_name!r} has no attribute {attr!r}") from None
    if not isinstance(obj, App):
        raise click.BadParameter(f"{spec} is a {type(obj).__name__}, not an asyncjobs.App")
    return obj


def no_such_task(app_spec: str, task: str, app: App) -> click.BadParameter:
    """A TASK argument naming no task of the --app: the closest names first, then all."""
    close = close_matches(task, app.tasks)
    hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
    known = ", ".join(sorted(app.tasks)) or "none"
    return click.BadParameter(
        f"{app_spec} has no task named {task!r}{hint} (it has: {known})", param_hint="TASK"
    )
