"""Bulk enqueue: jobs/s of `enqueue_many` at 1k/10k/100k jobs, plain (statement `enqueue`)
and with unique keys and schedules (statement `enqueue_unique_or_after`), against the same
statement reading its input from a temp table filled by COPY (asyncpg's
copy_records_to_table) instead of from unnest() over array parameters.

    .venv/bin/python -m benchmarks.enqueue_bulk --dsn postgresql://postgres@127.0.0.1/test

Each cell is the median of --repeat runs (min-max), each into emptied tables.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

import asyncjobs
from asyncjobs.client import PLAIN_COLUMNS, enqueue_columns

from .common import check_local

_UNNEST = "FROM unnest($1::text[]"
_PLAIN_COLUMNS = (
    "task text, queue text, priority int, args text, kwargs text, max_attempts int, "
    "timeout float8, run_at_in timestamptz, delay float8, backoff text"
)
_KEYED_COLUMNS = (
    f"{_PLAIN_COLUMNS}, unique_key text, refuse_duplicate bool, parents text, "
    "on_parent_failure text, n bigint"
)


def _calls(task: asyncjobs.Task[Any, Any], count: int, keyed: bool) -> list[asyncjobs.TaskCall]:
    if not keyed:
        return [task.call(i) for i in range(count)]
    run = uuid.uuid4().hex[:8]
    return [
        task.options(unique_key=f"{run}:{i}", delay=3600 if i % 2 else None).call(i)
        for i in range(count)
    ]


def _staged_statement(enqueue_sql: str, table: str) -> str:
    """The enqueue statement with its unnest() input replaced by a staging table."""
    start = enqueue_sql.index(_UNNEST)
    end = enqueue_sql.index("AS t(", start)
    end = enqueue_sql.index(")", end) + 1
    return enqueue_sql[:start] + f"FROM {table} AS t" + enqueue_sql[end:]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    check_local(args.dsn)
    schema = f"bench_enqueue_{uuid.uuid4().hex[:8]}"
    app = asyncjobs.App(args.dsn, schema=schema)

    @app.task(name="bench.noop")
    async def noop(i: int) -> None: ...

    admin = await asyncpg.connect(args.dsn)
    try:
        async with app.client() as client:
            staged = {
                False: _staged_statement(client.sql.enqueue, "aj_stage_plain"),
                True: _staged_statement(client.sql.enqueue_unique_or_after, "aj_stage_keyed"),
            }
            print(f"PostgreSQL {await admin.fetchval('SHOW server_version')}, schema {schema}")

            async def unnest(calls: list[asyncjobs.TaskCall]) -> None:
                await client.enqueue_many(calls)

            async def copy(calls: list[asyncjobs.TaskCall]) -> None:
                keyed = any(c.options.unique_key for c in calls)
                # COPY needs every column; the client sends an all-NULL one as a NULL array.
                columns = [
                    [None] * len(calls) if column is None else column
                    for column in enqueue_columns(calls)
                ]
                if keyed:
                    records = [(*row, n) for n, row in enumerate(zip(*columns, strict=True), 1)]
                else:
                    records = list(zip(*columns[:PLAIN_COLUMNS], strict=True))
                # One table name per layout: asyncpg caches a table's columns by name.
                table, stage = (
                    ("aj_stage_keyed", _KEYED_COLUMNS)
                    if keyed
                    else ("aj_stage_plain", _PLAIN_COLUMNS)
                )
                async with client.pool.acquire() as conn, conn.transaction():
                    await conn.execute(f"CREATE TEMP TABLE {table} ({stage}) ON COMMIT DROP")
                    await conn.copy_records_to_table(table, records=records)
                    await conn.fetchval(staged[keyed])

            variants: dict[str, Callable[[list[asyncjobs.TaskCall]], Awaitable[None]]] = {
                "unnest": unnest,
                "copy": copy,
            }
            print(f"{'jobs':>7}  {'batch':<16}" + "".join(f"{v:>26}" for v in variants))
            for size in (int(s) for s in args.sizes.split(",")):
                for keyed in (False, True):
                    cells = []
                    for run in variants.values():
                        rates = []
                        for _ in range(args.repeat):
                            await admin.execute(
                                f'TRUNCATE "{schema}".jobs, "{schema}".queue, '
                                f'"{schema}".job_parents'
                            )
                            await admin.execute(f'VACUUM ANALYZE "{schema}".jobs')
                            calls = _calls(noop, size, keyed)
                            started = time.perf_counter()
                            await run(calls)
                            rates.append(size / (time.perf_counter() - started))
                        cells.append(
                            f"{statistics.median(rates):,.0f} ({min(rates):,.0f}-{max(rates):,.0f})"
                        )
                    label = "keys+schedules" if keyed else "plain"
                    print(f"{size:>7}  {label:<16}" + "".join(f"{c:>26}" for c in cells))
    finally:
        await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await admin.close()
    print(f"({datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; jobs/s, median (min-max))")


if __name__ == "__main__":
    asyncio.run(main())
