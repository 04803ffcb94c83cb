"""The drain in-process: the worker's own CPU per job, without a CLI process or a producer
sharing the machine's attention.

    python -m benchmarks.drain_inprocess --dsn postgresql://postgres@127.0.0.1:5432/bench_ip \
        [--jobs 20000] [--concurrency 10] [--profile out.prof]

Makes the database afresh (it is dropped first: give one of its own), enqueues `--jobs`
no-op jobs (the benchmarks' `bench.noop`), then runs `async with app.worker()` in this
process until every job has succeeded. Prints the wall time, jobs/s and the process's CPU
per job; with `--profile`, runs cProfile over the drain, prints Python calls per job and
writes the stats for `pstats`. Run it from a worktree to measure that tree.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import time

import asyncpg

from benchmarks.systems import asyncjobs_tasks


async def drain(dsn: str, jobs: int, concurrency: int, profile: str | None) -> None:
    server, _, database = dsn.rpartition("/")
    admin = await asyncpg.connect(f"{server}/postgres")
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{database}"')
    finally:
        await admin.close()
    app = asyncjobs_tasks.app
    app.dsn = dsn
    async with app.client() as client:
        for start in range(0, jobs, 1_000):
            stop = min(jobs, start + 1_000)
            await client.enqueue_many(asyncjobs_tasks.noop.call(i) for i in range(start, stop))
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("VACUUM ANALYZE")
        profiler = cProfile.Profile() if profile else None
        cpu, wall = time.process_time(), time.perf_counter()
        if profiler is not None:
            profiler.enable()
        async with app.worker(concurrency=concurrency):
            while await conn.fetchval(
                "SELECT count(*) FROM asyncjobs.jobs WHERE state <> 'succeeded'"
            ):
                await asyncio.sleep(0.05)
        if profiler is not None:
            profiler.disable()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        await conn.close()
    print(
        f"{jobs} jobs, c={concurrency}: {wall:.2f} s, {jobs / wall:,.0f} jobs/s, "
        f"CPU {cpu / jobs * 1e6:.0f} µs per job"
    )
    if profiler is not None and profile is not None:
        stats = pstats.Stats(profiler)
        calls = sum(entry[1] for entry in stats.stats.values())  # type: ignore[attr-defined]
        print(f"{calls / jobs:.0f} Python calls per job; stats in {profile}")
        stats.dump_stats(profile)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", required=True, help="a database of its own: it is recreated")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--profile", metavar="FILE", help="cProfile the drain, stats to FILE")
    args = parser.parse_args()
    asyncio.run(drain(args.dsn, args.jobs, args.concurrency, args.profile))


if __name__ == "__main__":
    main()
