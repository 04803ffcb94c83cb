"""Bulk enqueue: jobs/s of `enqueue_many` at 1k/10k/100k jobs, plain (statement `enqueue`)
and with unique keys and schedules (statement `enqueue_unique_or_after`).

    .venv/bin/python -m benchmarks.enqueue_bulk --dsn postgresql://postgres@127.0.0.1/test

Each cell is the median of --repeat runs (min-max), each into emptied tables; the calls
are made before the clock starts (`task.options(...)` per keyed call costs more than its
insert).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import statistics
import time
import uuid
from typing import Any

import asyncpg

import asyncjobs

from .common import check_local


def _calls(task: asyncjobs.Task[Any, Any], count: int, keyed: bool) -> list[asyncjobs.TaskCall]:
    if not keyed:
        return [task.call(i) for i in range(count)]
    run = uuid.uuid4().hex[:8]
    return [
        task.options(unique_key=f"{run}:{i}", delay=3600 if i % 2 else None).call(i)
        for i in range(count)
    ]


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
            print(f"PostgreSQL {await admin.fetchval('SHOW server_version')}, schema {schema}")
            print(f"{'jobs':>7}  {'plain':>26}  {'keys+schedules':>26}")
            for size in (int(s) for s in args.sizes.split(",")):
                cells = []
                for keyed in (False, True):
                    rates = []
                    for _ in range(args.repeat):
                        await admin.execute(
                            f'TRUNCATE "{schema}".jobs, "{schema}".queue, "{schema}".job_parents'
                        )
                        await admin.execute(f'VACUUM ANALYZE "{schema}".jobs')
                        calls = _calls(noop, size, keyed)
                        started = time.perf_counter()
                        await client.enqueue_many(calls)
                        rates.append(size / (time.perf_counter() - started))
                    cells.append(
                        f"{statistics.median(rates):,.0f} ({min(rates):,.0f}-{max(rates):,.0f})"
                    )
                print(f"{size:>7}  " + "  ".join(f"{c:>26}" for c in cells))
    finally:
        await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await admin.close()
    print(f"({datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; jobs/s, median (min-max))")


if __name__ == "__main__":
    asyncio.run(main())
