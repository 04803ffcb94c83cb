"""What the queue pause costs the claim statement (migration 10), measured alone.

Two schemas on one server: one at migration 9 (claim_jobs before pauses existed), one at
10. Each gets the same backlog; the claim statement runs in turns on each (interleaved, so
that a noisy machine weighs on both alike), inside a transaction that is rolled back, so
every claim finds the same rows. Prints the median and p90 per claim, in microseconds.

    python -m benchmarks.claim_pause_cost --dsn postgresql://postgres@127.0.0.1:5432/bench
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import asyncpg

from asyncjobs.db.migrations import available
from asyncjobs.db.sql import Queries, render

BEFORE, AFTER = "claimcost_v9", "claimcost_v10"


async def _schema(conn: asyncpg.Connection, schema: str, upto: int, jobs: int) -> None:
    await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    await conn.execute(f'CREATE SCHEMA "{schema}"')
    await conn.execute(
        render(
            "CREATE TABLE {schema}.migrations (version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())",
            schema,
        )
    )
    for migration in available():
        if migration.version <= upto:
            await conn.execute(render(migration.sql, schema))
    await conn.execute(
        render(
            "INSERT INTO {schema}.queue (job_id, queue, priority, run_at)"
            " SELECT g, CASE WHEN g % 2 = 0 THEN 'a' ELSE 'b' END, 0, now() - interval '1 s'"
            "   FROM generate_series(1, $1) AS g",
            schema,
        ),
        jobs,
    )
    await conn.execute(render("VACUUM ANALYZE {schema}.queue", schema))


class _Rollback(Exception):
    pass


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--rounds", type=int, default=3000)
    parser.add_argument("--jobs", type=int, default=20000)
    args = parser.parse_args()
    conn = await asyncpg.connect(args.dsn)
    try:
        await _schema(conn, BEFORE, 9, args.jobs)
        await _schema(conn, AFTER, 10, args.jobs)
        sql = {s: Queries.for_schema(s).claim for s in (BEFORE, AFTER)}
        for wanted, queues in [(1, ["a"]), (10, ["a"]), (10, ["b", "a"])]:
            times: dict[str, list[float]] = {BEFORE: [], AFTER: []}
            for i in range(args.rounds):
                order = (BEFORE, AFTER) if i % 2 == 0 else (AFTER, BEFORE)
                for schema in order:
                    start = time.perf_counter()
                    try:
                        async with conn.transaction():
                            await conn.fetch(sql[schema], queues, wanted)
                            times[schema].append(time.perf_counter() - start)
                            raise _Rollback
                    except _Rollback:
                        pass
            cells = []
            for schema in (BEFORE, AFTER):
                ts = sorted(times[schema][100:])  # the first ones warm the plans up
                cells.append(
                    f"{schema}: median {statistics.median(ts) * 1e6:7.1f} us,"
                    f" p90 {ts[int(len(ts) * 0.9)] * 1e6:7.1f} us"
                )
            print(f"claim {wanted:>2} of queues {','.join(queues):<4}  " + "   ".join(cells))
        for schema in (BEFORE, AFTER):
            await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    finally:
        await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
