"""What the NOTIFY of the progress write costs (issue 13: a running job's page is updated by
push), measured on the statement alone.

The worker writes what its running jobs report in one `report_progress` statement every
0.5 s at most, however often the jobs report; the statement now also sends one NOTIFY
naming the jobs written. This runs the statement as shipped and as it was before
(`--before`, a commit whose queries.sql has no NOTIFY in it), in turns, on the same --jobs
running jobs (one progress value and one log line each), --rounds times each, with a
session listening on the channel (the dashboard) or not, and prints the median and p90 per
statement in microseconds.

    python -m benchmarks.progress_notify_cost --dsn postgresql://postgres@127.0.0.1:5432/bench
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import time

import asyncpg

import asyncjobs
from asyncjobs.db.sql import Queries, parse, render

from .common import ROOT

SCHEMA = "progresscost"


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3000)
    parser.add_argument("--before", default="3f19dbb")
    args = parser.parse_args()
    old_text = subprocess.run(
        ["git", "show", f"{args.before}:asyncjobs/db/queries.sql"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    statements = {
        "without NOTIFY": render(parse(old_text)["report_progress"], SCHEMA),
        "with NOTIFY": Queries.for_schema(SCHEMA).report_progress,
    }
    assert "pg_notify" in statements["with NOTIFY"]
    assert "pg_notify" not in statements["without NOTIFY"]
    conn = await asyncpg.connect(args.dsn)
    listener = await asyncpg.connect(args.dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')
        await asyncjobs.App(args.dsn, schema=SCHEMA).migrate()
        # Running jobs as a worker leaves them: processing, attempt 1, a queue entry.
        ids = [
            row["id"]
            for row in await conn.fetch(
                render(
                    "INSERT INTO {schema}.jobs (task, queue, state, attempt, max_attempts,"
                    " queue_entry, started_at) SELECT 'report', 'default', 'processing', 1, 3,"
                    " g, now() FROM generate_series(1, $1) AS g RETURNING id",
                    SCHEMA,
                ),
                args.jobs,
            )
        ]
        entries = list(range(1, args.jobs + 1))
        heard = 0

        def hear(*_: object) -> None:
            nonlocal heard
            heard += 1

        results: dict[tuple[str, str], list[float]] = {}
        for listening in ("nobody listening", "a dashboard listening"):
            if listening != "nobody listening":
                await listener.add_listener(f"{SCHEMA}.progress", hear)
            for r in range(args.rounds + 100):
                names = list(statements) if r % 2 == 0 else list(reversed(statements))
                for name in names:
                    values = (
                        ids,
                        entries,
                        [1] * args.jobs,
                        [r / (args.rounds + 100)] * args.jobs,
                        [f"step {r}"] * args.jobs,
                        [f'[{{"message": "step {r}", "attempt": 1}}]'] * args.jobs,
                        50,
                        [None] * args.jobs,
                    )
                    start = time.perf_counter()
                    rows = await conn.fetch(statements[name], *values)
                    took = time.perf_counter() - start
                    assert len(rows) == args.jobs
                    if r >= 100:  # warm-up
                        results.setdefault((listening, name), []).append(took)
        await asyncio.sleep(0.2)
        assert heard > 0
    finally:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')
        await conn.close()
        await listener.close()
    print(f"report_progress for {args.jobs} running jobs, {args.rounds} runs each, µs")
    print(f"{'':<24} {'statement':<16} {'median':>8} {'p90':>8}")
    for (listening, name), times in results.items():
        times.sort()
        p90 = times[int(len(times) * 0.9)]
        print(f"{listening:<24} {name:<16} {statistics.median(times) * 1e6:8.0f} {p90 * 1e6:8.0f}")


if __name__ == "__main__":
    asyncio.run(main())
