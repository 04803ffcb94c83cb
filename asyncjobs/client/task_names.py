"""Task names that workers have had: recorded by each worker as it starts, and checked by
an enqueue by name, so that a misspelt name fails at once instead of as a job no worker
can run.

A name is known once any worker on the schema has had it, and stays known (a task whose
workers are all gone, between deploys say, still is). The client caches what it read and
reads again only on a miss, so an enqueue of a known name costs a set lookup.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ..db.parameters import RecordTaskNames
from ..db.sql import Queries
from ..errors import AsyncJobsError, UnknownTaskError
from ..tasks import JobOptions, Task

if TYPE_CHECKING:
    import asyncpg

    from ..db.pool import Pool


async def record_task_names(
    conn: asyncpg.Connection, sql: Queries, tasks: Mapping[str, Task[Any, Any]]
) -> None:
    """Record the app's tasks and their default options as known (statement
    `record_task_names`): a worker does this as it starts."""
    if not tasks:
        return
    names = sorted(tasks)
    defaults = [tasks[name].defaults for name in names]
    parameters = RecordTaskNames(
        names=names,
        queues=[d.queue for d in defaults],
        priorities=[d.priority for d in defaults],
        max_attempts=[d.max_attempts for d in defaults],
        timeouts=[d.timeout for d in defaults],
    )
    await conn.execute(sql.record_task_names, *parameters)


class KnownTaskNames:
    """The task names workers on one schema have had, with the default options they
    recorded, as last read (statement `known_task_names`)."""

    def __init__(self, schema: str) -> None:
        self._schema = schema
        self._options: dict[str, JobOptions] = {}

    async def options(self, pool: Pool, sql: Queries, name: str) -> JobOptions | None:
        """The default options the last worker to start with task `name` recorded (queue,
        priority, attempts, timeout), or None if no worker has had it."""
        found = self._options.get(name)
        if found is None:
            rows = await pool.fetch(sql.known_task_names)
            self._options = {row["name"]: _recorded(row) for row in rows}
            found = self._options.get(name)
        return found

    async def check(self, pool: Pool, sql: Queries, name: str, own: Iterable[str]) -> None:
        """Return if a worker has had a task named `name`; else raise UnknownTaskError
        naming close matches among those and `own` (the client's app's tasks)."""
        if await self.options(pool, sql, name) is None:
            raise unknown_task(name, set(self._options).union(own), self._schema)


def _recorded(row: asyncpg.Record) -> JobOptions:
    try:
        return JobOptions(
            queue=row["queue"],
            priority=row["priority"],
            max_attempts=row["max_attempts"],
            timeout=row["timeout"],
        )
    except AsyncJobsError:
        # Written by a worker of another version, or by hand: the job still gets
        # asyncjobs' defaults rather than an enqueue that fails for it.
        return JobOptions()


def close_matches(name: str, known: Iterable[str], n: int = 3) -> list[str]:
    """Up to `n` known names that `name` may be a misspelling of, the closest first.

    Compared by their function names (what follows the last dot), case aside: names of one
    module share a long prefix, which alone would make difflib find any of them close
    ('myproject.tasks.charge_card' for 'myproject.tasks.nothing_like_it'). The whole names
    break ties, so a typo in the module is found too (the same function name)."""
    function = _function(name)
    scored = []
    for candidate in set(known):
        alike = difflib.SequenceMatcher(None, function, _function(candidate)).ratio()
        if alike >= _CLOSE:
            whole = difflib.SequenceMatcher(None, name.lower(), candidate.lower()).ratio()
            scored.append((-alike, -whole, candidate))
    return [candidate for _, _, candidate in sorted(scored)[:n]]


_CLOSE = 0.6  # difflib's own default cutoff


def _function(name: str) -> str:
    return name.rpartition(".")[2].lower()


def unknown_task(name: str, known: Iterable[str], schema: str) -> UnknownTaskError:
    """The error for an enqueue of a name no worker has had, with the closest known names."""
    candidates = sorted(set(known))
    close = close_matches(name, candidates)
    if close:
        hint = "; did you mean " + " or ".join(repr(c) for c in close) + "?"
    elif candidates:
        hint = f" (known: {', '.join(repr(c) for c in candidates[:10])}"
        hint += ", ...)." if len(candidates) > 10 else ")."
    else:
        hint = " (no worker has run on it yet)."
    return UnknownTaskError(
        f"no worker on schema {schema!r} has ever had a task named {name!r}{hint} Task "
        "names are 'module.function' (the function's __module__ and __qualname__) unless "
        "the task was given name=. To enqueue it anyway (its workers are not deployed "
        "yet), use app.client(allow_unknown_tasks=True), or `asyncjobs enqueue "
        "--allow-unknown-task`; nothing was enqueued"
    )
