"""What the dashboard's index (migrations 14 and 15: a partial hash index on unique_key) costs
the enqueue, measured alone; --variant btree puts migration 14's btree in its place, and
gin-args and gin-both add GIN indexes on the arguments, to show what they would cost.

Two schemas on one server: one without the index, one with it, each pre-filled with the
same --fill jobs (as benchmarks/dashboard_pages makes them), so the indexes are not empty.
Enqueues run in turns on each (interleaved, the first side alternating, so that a noisy
machine weighs on both alike): --single one-at-a-time enqueues, then one enqueue_many of
--batch jobs, per round. Three shapes: `noop(i)` (the benchmarks' task),
`send(i, "user..@example.com", n=i % 97)` (three values for a GIN index), and that with a
unique key (an entry in the unique_key index). Prints the
median over the rounds of the time per job, and after / before.

    python -m benchmarks.enqueue_index_cost --dsn postgresql://postgres@127.0.0.1:5432/bench
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time
import uuid
from typing import Any

import asyncpg

import asyncjobs
from asyncjobs.db.sql import render

from .dashboard_pages import FILL

BEFORE, AFTER = "enqcost_without", "enqcost_with"


# The "with" side's indexes besides migration 14's, to compare designs.
VARIANTS = {
    "migration": [],
    # Migration 14's index, before 15 made it a hash index: a btree holding the whole key.
    "btree": [
        "DROP INDEX {schema}.jobs_unique_key_idx",
        "CREATE INDEX jobs_unique_key_idx ON {schema}.jobs (unique_key)"
        " WHERE unique_key IS NOT NULL",
    ],
    "gin-args": ["CREATE INDEX jobs_args_idx ON {schema}.jobs USING gin (args jsonb_path_ops)"],
    "gin-both": [
        "CREATE INDEX jobs_args_idx ON {schema}.jobs USING gin (args jsonb_path_ops)",
        "CREATE INDEX jobs_kwargs_idx ON {schema}.jobs USING gin (kwargs jsonb_path_ops)",
    ],
}
_KEY_INDEXES = ("jobs_unique_key_idx",)


async def _schema(
    app: asyncjobs.App, conn: asyncpg.Connection, variant: str | None, fill: int
) -> None:
    """variant None: without the unique_key index."""
    await conn.execute(f'DROP SCHEMA IF EXISTS "{app.schema}" CASCADE')
    await app.migrate()
    # The index dropped (or changed) by hand: the client checks that every migration is
    # applied.
    changes = (
        [f"DROP INDEX {{schema}}.{index}" for index in _KEY_INDEXES]
        if variant is None
        else VARIANTS[variant]
    )
    for change in changes:
        await conn.execute(render(change, app.schema))
    if fill:
        await conn.execute(render(FILL, app.schema), fill)
    await conn.execute(render("VACUUM ANALYZE {schema}.jobs", app.schema))


def _app(dsn: str, schema: str) -> tuple[asyncjobs.App, Any, Any]:
    app = asyncjobs.App(dsn, schema=schema)

    @app.task(name="bench.noop")
    async def noop(i: int) -> None:
        pass

    @app.task(name="bench.send")
    async def send(i: int, to: str, n: int = 0) -> None:
        pass

    return app, noop, send


SHAPES = ("noop", "send", "keyed")


def _call(task: Any, shape: str, i: int) -> Any:
    if shape == "noop":
        return task.call(i)
    if shape == "keyed":
        task = task.options(unique_key=uuid.uuid4().hex)
    return task.call(i, f"user{i % 5000}@example.com", n=i % 97)


async def _one(client: asyncjobs.Client, task: Any, shape: str, i: int) -> None:
    if shape == "noop":
        await client.enqueue(task, i)
        return
    if shape == "keyed":
        task = task.options(unique_key=uuid.uuid4().hex)
    await client.enqueue(task, i, f"user{i % 5000}@example.com", n=i % 97)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--fill", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--single", type=int, default=100)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="migration")
    args = parser.parse_args()
    sides = {name: _app(args.dsn, name) for name in (BEFORE, AFTER)}
    try:
        conn = await asyncpg.connect(args.dsn)
    except asyncpg.InvalidCatalogNameError as exc:
        raise SystemExit(f"{exc}: create it first (createdb), or pass another --dsn") from None
    try:
        for name, (app, _, _) in sides.items():
            await _schema(app, conn, None if name == BEFORE else args.variant, args.fill)
    finally:
        await conn.close()
    # per (shape, kind, side): seconds per job, one value per round
    times: dict[tuple[str, str, str], list[float]] = {}
    async with contextlib.AsyncExitStack() as stack:
        clients = {
            name: await stack.enter_async_context(app.client())
            for name, (app, _, _) in sides.items()
        }
        for shape in SHAPES:
            for name, (_, noop, send) in sides.items():  # warm-up: connections, statements
                task = noop if shape == "noop" else send
                for i in range(20):
                    await _one(clients[name], task, shape, i)
                await clients[name].enqueue_many(_call(task, shape, i) for i in range(200))
            for r in range(args.rounds):
                order = [BEFORE, AFTER] if r % 2 == 0 else [AFTER, BEFORE]
                for name in order:
                    _, noop, send = sides[name]
                    task = noop if shape == "noop" else send
                    client = clients[name]
                    start = time.perf_counter()
                    for i in range(r * 10_000, r * 10_000 + args.single):
                        await _one(client, task, shape, i)
                    took = time.perf_counter() - start
                    times.setdefault((shape, "single", name), []).append(took / args.single)
                    batch = [_call(task, shape, r * 10_000 + i) for i in range(args.batch)]
                    start = time.perf_counter()
                    await client.enqueue_many(batch)
                    took = time.perf_counter() - start
                    times.setdefault((shape, "batch", name), []).append(took / args.batch)
    conn = await asyncpg.connect(args.dsn)
    try:
        for name in (BEFORE, AFTER):
            await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    finally:
        await conn.close()
    print(
        f"indexes {args.variant!r}; {args.fill:,} jobs in each table first; "
        f"{args.rounds} rounds; µs per job, median"
    )
    print(f"{'enqueue':<28} {'without':>10} {'with':>10} {'ratio':>10}")
    for shape in SHAPES:
        for kind in ("single", "batch"):
            before = statistics.median(times[(shape, kind, BEFORE)]) * 1e6
            after = statistics.median(times[(shape, kind, AFTER)]) * 1e6
            label = f"{shape}, {'one at a time' if kind == 'single' else f'{args.batch:,} a call'}"
            print(f"{label:<28} {before:10.1f} {after:10.1f} {after / before:10.3f}")


if __name__ == "__main__":
    asyncio.run(main())
