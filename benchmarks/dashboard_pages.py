"""How fast the dashboard's pages answer with many jobs in the table (issue 13: every page
in <= 200 ms p95 with 1,000,000 jobs). Not a test: a measurement.

Fills a fresh schema with --jobs jobs (mostly finished over the last week, some queued,
scheduled, failed and running, a few queues and tasks) straight in SQL, then asks each
page --rounds times through httpx's ASGI transport (no network) and prints p50 and p95.

    python -m benchmarks.dashboard_pages --dsn postgresql://postgres@127.0.0.1:5432/bench
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import asyncpg
import httpx

import asyncjobs
from asyncjobs.db.sql import render

SCHEMA = "dashbench"

FILL = """
INSERT INTO {schema}.jobs (task, queue, args, kwargs, state, attempt, max_attempts, run_at,
                           created_at, started_at, finished_at, result, unique_key,
                           active_key)
SELECT 'task_' || (g % 7), 'queue_' || (g % 5),
       jsonb_build_array(g % 1000, 'user' || (g % 5000) || '@example.com'),
       jsonb_build_object('n', g % 97),
       s.state, 1, 3, t.at, t.at, t.at + interval '20 ms',
       CASE WHEN s.state IN ('succeeded', 'failed', 'cancelled')
            THEN t.at + interval '120 ms' END,
       CASE WHEN s.state = 'succeeded' THEN '"ok"'::jsonb END,
       CASE WHEN g % 100 = 0 THEN 'key-' || g END,
       CASE WHEN g % 100 = 0 AND s.state IN ('queued', 'processing') THEN 'key-' || g END
  FROM generate_series(1, $1) AS g,
       LATERAL (SELECT now() - (($1 - g)::float8 / $1) * interval '7 days' AS at) AS t,
       LATERAL (SELECT CASE WHEN g > $1 - 2000 THEN 'queued'
                            WHEN g > $1 - 2100 THEN 'processing'
                            WHEN g % 50 = 0 THEN 'failed'
                            WHEN g % 333 = 0 THEN 'cancelled'
                            ELSE 'succeeded' END AS state) AS s
"""


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--keep", action="store_true", help="reuse a filled schema")
    args = parser.parse_args()
    app = asyncjobs.App(args.dsn, schema=SCHEMA)
    conn = await asyncpg.connect(args.dsn)
    try:
        count = 0
        if args.keep:
            exists = await conn.fetchval("SELECT to_regclass($1)", f"{SCHEMA}.jobs")
            if exists:
                count = await conn.fetchval(render("SELECT count(*) FROM {schema}.jobs", SCHEMA))
        if count < args.jobs:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')
            await app.migrate()
            start = time.perf_counter()
            await conn.execute(render(FILL, SCHEMA), args.jobs)
            await conn.execute(render("VACUUM ANALYZE {schema}.jobs", SCHEMA))
            print(f"filled {args.jobs:,} jobs in {time.perf_counter() - start:.1f} s")
        some = await conn.fetchval(render("SELECT max(id) - 5 FROM {schema}.jobs", SCHEMA))
        failed = await conn.fetchval(
            render("SELECT max(id) FROM {schema}.jobs WHERE state = 'failed'", SCHEMA)
        )
    finally:
        await conn.close()
    pages = [
        "/",
        "/jobs",
        "/jobs?state=failed",
        "/jobs?state=cancelled&queue=queue_3",
        "/jobs?task=task_2",
        "/jobs?unique_key=key-500000",
        '/jobs?args=["user42@example.com"]',
        f"/jobs?before={some - 500_000}",
        f"/jobs/{some}",
        f"/jobs/{failed}",
        "/workers",
        "/queues",
        "/schedules",
    ]
    async with app.dashboard() as dashboard:
        transport = httpx.ASGITransport(app=dashboard, client=("127.0.0.1", 1))
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
            print(f"{'page':<44} {'p50 ms':>8} {'p95 ms':>8}")
            for page in pages:
                times = []
                for _ in range(args.rounds + 2):
                    start = time.perf_counter()
                    response = await http.get(page)
                    times.append(time.perf_counter() - start)
                    assert response.status_code == 200, (page, response.status_code)
                times = sorted(times[2:])
                p95 = times[min(len(times) - 1, round(len(times) * 0.95) - 1)]
                print(f"{page:<44} {statistics.median(times) * 1000:8.1f} {p95 * 1000:8.1f}")


if __name__ == "__main__":
    asyncio.run(main())
