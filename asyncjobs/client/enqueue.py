"""Enqueueing: the calls a batch is made of, the parameters statement `enqueue` (or
`enqueue_unique_or_after`) takes for them, and running it. Used by the client and by the
worker's scheduler (whose ticks enqueue on their own transaction)."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import asyncpg

from ..db.parameters import Enqueue, EnqueueUniqueOrAfter
from ..db.sql import Queries
from ..errors import ConfigurationError, DuplicateJob, JobNotFound, SerializationError
from ..hooks import Around, Enqueueing, Hooks, call_each
from ..retry import Backoff
from ..serialization import (
    MAX_ARGUMENTS_BYTES,
    arguments_too_big,
    dumps,
    encode_arguments,
    loads,
)
from ..tasks import JobOptions, Task, TaskCall, validate_task_name

if TYPE_CHECKING:
    from ..db.pool import Pool


def task_call(
    tasks: Mapping[str, Task[Any, Any]],
    task: Task[Any, Any] | str,
    args: Sequence[Any],
    kwargs: dict[str, Any],
) -> TaskCall[Any]:
    """One job of `task` (a task, or the name of one, registered in `tasks` or not) with
    these arguments, ready to enqueue; a name not in `tasks` gets asyncjobs' default
    options (the client then puts in those its workers recorded)."""
    if isinstance(task, str):
        validate_task_name(task)
        registered = tasks.get(task)
        if registered is None:
            # A producer need not import the task's code; the worker that runs it
            # reports an unknown name on the job itself.
            encoded_args, encoded_kwargs = encode_arguments(task, args, kwargs)
            return TaskCall(task, encoded_args, encoded_kwargs, JobOptions())
        task = registered
    if not isinstance(task, Task):
        raise ConfigurationError(f"enqueue needs a task or a task name, got {task!r}")
    return task.call(*args, **kwargs)


async def enqueue_calls(
    conn: asyncpg.Connection | Pool,
    sql: Queries,
    calls: list[TaskCall[Any]],
    trace_context: str | None = None,
) -> list[int]:
    """Store these calls' jobs with one statement (`enqueue`, or `enqueue_unique_or_after`
    when a call has a unique key or parents) on `conn`; return their ids in call order.
    `trace_context`: JSON text stored with every job of the batch (see hooks.Enqueueing)."""
    if not calls:
        return []
    statement, parameters = enqueue_statement(sql, calls, trace_context)
    with refusals():
        ids: list[int] = await conn.fetchval(statement, *parameters)
    return ids


def enqueue_statement(
    sql: Queries, calls: list[TaskCall[Any]], trace_context: str | None = None
) -> tuple[str, Enqueue | EnqueueUniqueOrAfter]:
    """The statement that stores these calls' jobs, and its parameters (`trace_context`:
    JSON text stored with every job of the batch)."""
    for call in calls:
        if not isinstance(call, TaskCall):
            raise ConfigurationError(f"enqueue_many takes task.call(...) items, got {call!r}")
    parameters = enqueue_parameters(calls, trace_context)
    if isinstance(parameters, Enqueue):
        return sql.enqueue, parameters
    return sql.enqueue_unique_or_after, parameters


# A batch's arguments travel in one message, which PostgreSQL refuses past 1 GB (it drops
# the connection, so the caller could not even tell that nothing was stored).
MAX_BATCH_ARGUMENTS_BYTES = 512 * 1024 * 1024

# Between the JSON values of a batch's arguments: the ASCII record separator, as in RFC 7464.
# JSON text never holds it unescaped, so it can't be part of a value.
RS = b"\x1e"


# Stores a batch of calls with a trace context (or None): `enqueue_calls` on a pool or an
# asyncpg connection, or the caller's transaction (client/transactions.py).
Store = Callable[[list[TaskCall[Any]], "str | None"], Awaitable[list[int]]]


async def enqueue_with_hooks(store: Store, calls: list[TaskCall[Any]], hooks: Hooks) -> list[int]:
    """`store(calls, trace_context)` through the enqueue hooks (hooks.py), if there are
    any: the `around_enqueue` ones around it (what they put in the event's trace context is
    stored with the jobs), then the `on_enqueue` ones."""
    if not hooks.on_enqueues or not calls:
        return await store(calls, None)
    event = Enqueueing(
        calls=calls,
        tasks=tuple(dict.fromkeys(call.task for call in calls)),
        queues=tuple(dict.fromkeys(call.options.queue for call in calls)),
        count=len(calls),
    )
    try:
        async with Around(hooks.enqueue_around, event):
            context = dumps(event.trace_context).decode() if event.trace_context else None
            event.job_ids = await store(calls, context)
    except BaseException as exc:
        event.error = exc
        raise
    await call_each(hooks.enqueue, event)
    return event.job_ids


def enqueue_parameters(
    calls: Sequence[TaskCall[Any]], trace_context: str | None = None
) -> Enqueue | EnqueueUniqueOrAfter:
    """The parameters of statement `enqueue` for a batch of calls; when a call has a unique
    key or parents, those of `enqueue_unique_or_after`.

    Each call's arguments go in two texts, its positional (`args`) and keyword (`kwargs`,
    None when no call has any) arguments as JSON values joined by RS. The options go once
    per distinct (task, options) of the batch (mostly one: the task's defaults), as rows of
    arrays, and `options_rows` says which row each call takes (None: all the first): asyncpg
    encodes a long array slowly, and per-call arrays of every option were much of a batch's
    time (figures: benchmarks/README.md)."""
    groups: dict[tuple[str, int], int] = {}
    firsts: list[TaskCall[Any]] = []
    rows: list[int] = []
    for call in calls:
        key = (call.task, id(call.options))
        row = groups.get(key)
        if row is None:
            row = groups[key] = len(firsts) + 1
            firsts.append(call)
        rows.append(row)
    options = [c.options for c in firsts]
    n = len(calls)
    args = RS.join([c.args for c in calls])
    kwargs_list = [c.kwargs for c in calls]
    kwargs = None if kwargs_list.count(b"{}") == n else RS.join(kwargs_list)
    if args.count(RS) != n - 1 or (kwargs is not None and kwargs.count(RS) != n - 1):
        raise SerializationError(
            "a call's arguments are not JSON text: make calls with task.call(...)"
        )
    size = len(args) + (0 if kwargs is None else len(kwargs))
    if size > MAX_ARGUMENTS_BYTES:
        _refuse_big(calls, size)
    plain = Enqueue(
        options_rows=None if len(firsts) == 1 else rows,
        args=args.decode(),
        kwargs=None if kwargs is None else kwargs.decode(),
        tasks=[c.task for c in firsts],
        queues=[o.queue for o in options],
        priorities=[o.priority for o in options],
        max_attempts=[o.max_attempts for o in options],
        timeouts=[o.timeout for o in options],
        run_ats=[o.run_at for o in options],
        delays=[o.delay for o in options],
        backoffs=[_backoff_json(o.backoff) for o in options],
        trace_context=trace_context,
    )
    if not any(o.unique_key is not None or o.after for o in options):
        return plain
    return EnqueueUniqueOrAfter(
        *plain,
        unique_keys=[o.unique_key for o in options],
        refuse_duplicates=[o.on_duplicate == "raise" for o in options],
        parents=[_id_array(o.after) for o in options],
        on_parent_failures=[o.on_parent_failure if o.after else None for o in options],
    )


def _refuse_big(calls: Sequence[TaskCall[Any]], size: int) -> None:
    """Raise SerializationError for a call whose arguments are over MAX_ARGUMENTS_BYTES of
    JSON, or for a batch (of `size` bytes in all) over MAX_BATCH_ARGUMENTS_BYTES."""
    for call in calls:
        own = len(call.args) + len(call.kwargs)
        if own > MAX_ARGUMENTS_BYTES:
            raise arguments_too_big(call.task, own)
    if size > MAX_BATCH_ARGUMENTS_BYTES:
        raise SerializationError(
            f"the {len(calls)} calls' arguments are {size} bytes of JSON in all, over the "
            f"{MAX_BATCH_ARGUMENTS_BYTES} one statement carries; nothing was enqueued: "
            "enqueue them in smaller batches"
        )


def _backoff_json(backoff: Backoff | None) -> str | None:
    return None if backoff is None else dumps(backoff.to_json()).decode()


def _id_array(ids: tuple[int, ...]) -> str | None:
    """Job ids as a PostgreSQL array literal, the form the enqueue statement takes."""
    return "{" + ",".join(str(i) for i in ids) + "}" if ids else None


def calls_list(calls: Iterable[TaskCall[Any]]) -> list[TaskCall[Any]]:
    """`enqueue_many`'s argument as a list of calls, or ConfigurationError."""
    if isinstance(calls, TaskCall):  # a tuple itself: its parts would pass for calls
        raise ConfigurationError("enqueue_many takes a list of task.call(...) items, got one")
    try:
        return list(calls)
    except TypeError:
        raise ConfigurationError(
            f"enqueue_many takes a list of task.call(...) items, got {calls!r}"
        ) from None


@contextlib.contextmanager
def refusals() -> Iterator[None]:
    """Around an enqueue statement, on any driver: what it refused (a duplicate job, an
    unknown parent) raised as the client raises it (see `refused`)."""
    try:
        yield
    except Exception as exc:
        error = refused(exc)
        if error is exc:
            raise
        raise error from None


def refused(exc: BaseException) -> BaseException:
    """The error for an enqueue that statement `enqueue_unique_or_after` refused, else
    `exc` itself. `exc` is asyncpg's, psycopg's or SQLAlchemy's (which wraps either)."""
    constraint, detail = _diagnostics(exc)
    if constraint == "asyncjobs_unknown_parent":
        return JobNotFound(
            f"cannot enqueue after job {detail.replace(',', ', ')}: no such job (it never "
            "existed or was deleted); nothing was enqueued"
        )
    if constraint == "asyncjobs_unique_key":
        found = loads(detail)
        return DuplicateJob(found["task"], found["unique_key"], found["job"], found["state"])
    return exc


def _diagnostics(exc: BaseException) -> tuple[str | None, str]:
    """The constraint name and DETAIL of a PostgreSQL error, from whichever driver raised
    it: asyncpg's attributes, psycopg's `diag`, or what SQLAlchemy wraps (`orig`, then the
    adapter's cause)."""
    seen: BaseException | None = exc
    for _ in range(4):
        if seen is None:
            break
        if isinstance(seen, asyncpg.PostgresError):
            return getattr(seen, "constraint_name", None), getattr(seen, "detail", None) or ""
        diag = getattr(seen, "diag", None)
        if diag is not None and getattr(diag, "constraint_name", None):
            return diag.constraint_name, diag.message_detail or ""
        orig = getattr(seen, "orig", None)
        seen = orig if isinstance(orig, BaseException) else seen.__cause__
    return None, ""
