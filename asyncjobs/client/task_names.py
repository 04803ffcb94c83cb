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
from ..errors import UnknownTaskError
from ..tasks import Task

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
    """The task names workers on one schema have had, as last read (statement
    `known_task_names`)."""

    def __init__(self, schema: str) -> None:
        self._schema = schema
        self._names: frozenset[str] = frozenset()

    async def check(self, pool: Pool, sql: Queries, name: str, own: Iterable[str]) -> None:
        """Return if a worker has had a task named `name`; else raise UnknownTaskError
        naming close matches among those and `own` (the client's app's tasks)."""
        if name in self._names:
            return
        names: list[str] = await pool.fetchval(sql.known_task_names)
        self._names = frozenset(names)
        if name not in self._names:
            raise unknown_task(name, self._names.union(own), self._schema)


def unknown_task(name: str, known: Iterable[str], schema: str) -> UnknownTaskError:
    """The error for an enqueue of a name no worker has had, with the closest known names."""
    candidates = sorted(set(known))
    close = difflib.get_close_matches(name, candidates, n=3, cutoff=0.6)
    if not close:
        # 'send_email' for 'app.tasks.send_email': the module left out or changed.
        tail = name.rpartition(".")[2]
        close = [c for c in candidates if c.rpartition(".")[2] == tail][:3]
    if close:
        hint = "; did you mean " + " or ".join(repr(c) for c in close) + "?"
    elif candidates:
        hint = f" (known: {', '.join(repr(c) for c in candidates[:10])}"
        hint += ", ...)" if len(candidates) > 10 else ")"
    else:
        hint = " (no worker has run on it yet)"
    return UnknownTaskError(
        f"no worker on schema {schema!r} has ever had a task named {name!r}{hint}. Task "
        "names are 'module.function' (the function's __module__ and __qualname__) unless "
        "the task was given name=. To enqueue it anyway (its workers are not deployed "
        "yet), use app.client(allow_unknown_tasks=True), or `asyncjobs enqueue "
        "--allow-unknown-task`; nothing was enqueued"
    )
