"""Run the benchmarks: `python -m benchmarks.run --dsn postgresql://postgres@127.0.0.1:5432/bench`.

Measures asyncjobs, pgqueuer and procrastinate on the same server in the same run, prints
a table (median, min–max over the repeats), writes benchmarks/results/<timestamp>.json
and a PNG of the latency distributions next to it. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import importlib.metadata
import math
import os
import platform
import sys
import time
import traceback
import urllib.parse
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import psutil

from benchmarks import report, scenarios
from benchmarks.common import RESULTS, check_local, ensure_database, kill_all
from benchmarks.scenarios import Bench, Config, NotApplicable, PgbenchCeiling
from benchmarks.systems import NAMES, get
from benchmarks.systems.base import System

SCENARIOS = (
    "enqueue",
    "drain",
    "drain_observed",
    "pickup",
    "cancel",
    "crash",
    "crash4",
    "crash_handed_off",
    "shutdown",
    "memory",
    "held",
    "pgbench",
)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "-"


async def environment(dsn: str) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    try:
        settings = {
            name: await conn.fetchval(f"SHOW {name}")
            for name in (
                "fsync",
                "synchronous_commit",
                "full_page_writes",
                "wal_sync_method",
                "shared_buffers",
                "max_connections",
                "autovacuum",
            )
        }
        pg = await conn.fetchval("SELECT version()")
    finally:
        await conn.close()
    return {
        "postgres": pg,
        "settings": settings,
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "loadavg_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git": git_revision(),
        "versions": {
            d: version(d)
            for d in ("asyncjobs", "pgqueuer", "procrastinate", "asyncpg", "psycopg", "anyio")
        },
    }


def git_revision() -> str:
    import subprocess

    from benchmarks.common import ROOT

    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            check=False,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "asyncjobs"],
            cwd=ROOT,
            capture_output=True,
            check=False,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{rev}{' + uncommitted changes in asyncjobs/' if dirty else ''}" if rev else "unknown"


def header(env: dict[str, Any], args: argparse.Namespace, systems: list[System]) -> str:
    s = env["settings"]
    lines = [
        f"asyncjobs benchmarks — {datetime.datetime.now().isoformat(timespec='seconds')}",
        f"PostgreSQL: {env['postgres'].split(' on ')[0]}  (127.0.0.1, one server for all systems)",
        f"durability: PostgreSQL defaults — fsync={s['fsync']}, synchronous_commit="
        f"{s['synchronous_commit']}, full_page_writes={s['full_page_writes']}, "
        f"wal_sync_method={s['wal_sync_method']}; shared_buffers={s['shared_buffers']}, "
        f"max_connections={s['max_connections']}",
        f"machine: {env['cores']} cores, {env['cpu_model']}, {env['memory_gib']} GiB; "
        f"load average at start {', '.join(f'{x:.2f}' for x in env['loadavg_at_start'])}",
        f"python {env['python']}; " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()),
        f"asyncjobs source: git {env['git']}",
        f"mode: {'quick' if args.quick else 'full'}, repeats {args.repeat}; "
        "cells: median (min–max) over repeats",
    ]
    for system in systems:
        lines.append(f"  {system.name}: {system.notes}")
    return "\n".join(lines)


class Runner:
    def __init__(self, bench: Bench, systems: list[System], args: argparse.Namespace) -> None:
        self.bench = bench
        self.systems = systems
        self.args = args
        self.results: dict[str, dict[str, dict[str, Any]]] = {}

    def entry(self, scenario: str, system: str) -> dict[str, Any]:
        return self.results.setdefault(scenario, {}).setdefault(
            system, {"runs": [], "errors": [], "na": None}
        )

    async def measure(
        self, scenario: str, system: str, fn: Callable[[], Awaitable[dict[str, Any]]]
    ) -> None:
        entry = self.entry(scenario, system)
        if entry["na"]:
            return
        started = time.monotonic()
        try:
            figures = await fn()
        except NotApplicable as exc:
            entry["na"] = str(exc)
            print(f"    {scenario:<14} {system:<14} n/a: {exc}", flush=True)
            return
        except Exception as exc:  # one failed run must not end the whole benchmark
            entry["errors"].append(f"{type(exc).__name__}: {exc}")
            print(f"    {scenario:<14} {system:<14} ERROR {type(exc).__name__}: {exc}", flush=True)
            if self.args.verbose:
                traceback.print_exc()
            return
        entry["runs"].append(figures)
        print(
            f"    {scenario:<14} {system:<14} {brief(figures)}  "
            f"[{time.monotonic() - started:.1f} s]",
            flush=True,
        )

    async def run(self, wanted: list[str]) -> None:
        bench, args = self.bench, self.args
        for scenario in wanted:
            print(f"  -- {scenario}", flush=True)
            if scenario == "held":
                await self.held()
                continue
            if scenario == "pgbench":
                ceiling = PgbenchCeiling(bench)
                for _ in range(args.repeat):
                    await self.measure("pgbench", "postgres", ceiling.measure)
                continue
            for _ in range(args.repeat):
                for system in self.systems:
                    if scenario == "drain_observed" and "drain" in wanted:
                        continue  # measured right after each plain drain, below
                    if scenario in ("drain", "drain_observed"):
                        # Asked for both: each plain drain is followed by the observed one.
                        for c in (10, 50):
                            if scenario == "drain":
                                await self.measure(
                                    f"drain_c{c}",
                                    system.name,
                                    lambda s=system, c=c: scenarios.drain(bench, s, c),
                                )
                            if "drain_observed" in wanted and system.name == "asyncjobs":
                                await self.measure(
                                    f"drain_observed_c{c}",
                                    system.name,
                                    lambda s=system, c=c: scenarios.drain(
                                        bench, s, c, observe=True
                                    ),
                                )
                        continue
                    fn = getattr(scenarios, scenario)
                    await self.measure(scenario, system.name, lambda s=system, f=fn: f(bench, s))

    async def held(self) -> None:
        names = (
            self.args.held_systems.split(",")
            if self.args.held_systems
            else (["asyncjobs"] if self.args.quick else ["asyncjobs", "pgqueuer"])
        )
        for system in self.systems:
            if system.name not in names:
                continue
            for key, long_job in (("held_baseline", False), ("held_long", True)):
                await self.measure(
                    key,
                    system.name,
                    lambda s=system, lj=long_job: scenarios.held(self.bench, s, with_long_job=lj),
                )


def brief(figures: dict[str, Any]) -> str:
    parts = []
    for key, value in figures.items():
        if isinstance(value, (dict, list)):
            continue
        if isinstance(value, float):
            parts.append(f"{key}={'inf' if math.isinf(value) else f'{value:,.2f}'}")
        else:
            parts.append(f"{key}={value}")
    return " ".join(parts)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--dsn",
        default=os.environ.get("BENCH_DSN", "postgresql://postgres@127.0.0.1:5432/bench"),
        help="a local server; each system gets database <db>_<system> [$BENCH_DSN]",
    )
    p.add_argument("--systems", default=",".join(NAMES), help="comma-separated, default all")
    p.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma-separated subset of {','.join(SCENARIOS)}",
    )
    p.add_argument("--repeat", type=int, default=None, help="repeats (default 3; 1 with --quick)")
    p.add_argument("--quick", action="store_true", help="small sizes, 1 repeat: ~3-4 minutes")
    p.add_argument("--drain-jobs", type=int, default=None)
    p.add_argument(
        "--held-duration",
        type=float,
        default=None,
        help="seconds per phase of the held-transaction scenario (default 90, quick 10)",
    )
    p.add_argument(
        "--held-systems",
        default=None,
        help="systems for the held scenario (default: asyncjobs,pgqueuer; quick: asyncjobs)",
    )
    p.add_argument(
        "--asyncjobs-runner",
        choices=("cli", "harness"),
        default="cli",
        help="asyncjobs worker via `python -m asyncjobs worker` (default) or "
        "benchmarks.worker_proc",
    )
    p.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    return args


async def main_async(args: argparse.Namespace) -> int:
    check_local(args.dsn)
    config = Config.quick() if args.quick else Config()
    if args.drain_jobs:
        config.drain_jobs = args.drain_jobs
    if args.held_duration:
        config.held_duration = args.held_duration
        config.held_window = max(1.0, min(config.held_window, args.held_duration / 4))
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    logdir = args.out / f"{stamp}-logs"
    bench = Bench(args.dsn, config, logdir)
    systems = [get(name.strip()) for name in args.systems.split(",") if name.strip()]
    for system in systems:
        if system.name == "asyncjobs":
            system.runner = args.asyncjobs_runner  # type: ignore[attr-defined]
    wanted = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(wanted) - set(SCENARIOS)
    if unknown:
        raise SystemExit(f"unknown scenarios {sorted(unknown)}; choose from {SCENARIOS}")
    wanted = [s for s in SCENARIOS if s in wanted]

    # The named database need not exist: the run reads the server's settings through it.
    named = urllib.parse.urlsplit(args.dsn).path.strip("/")
    if named:
        await ensure_database(args.dsn, named)
    env = await environment(args.dsn)
    head = header(env, args, systems)
    print(head, flush=True)
    print(flush=True)
    runner = Runner(bench, systems, args)
    started = time.monotonic()
    interrupted = False
    try:
        await runner.run(wanted)
    except (KeyboardInterrupt, asyncio.CancelledError):
        interrupted = True
        print("\ninterrupted: reporting what was measured", flush=True)
    finally:
        kill_all()
    elapsed = time.monotonic() - started

    names = [s.name for s in systems]
    cfg = dataclasses.asdict(config)
    text = report.table(runner.results, names, cfg)
    goals = report.targets(runner.results) if "asyncjobs" in names else []
    print()
    print(head)
    print(f"total time {elapsed / 60:.1f} min")
    print()
    print(text)
    if goals:
        print()
        print(report.targets_text(goals))
    json_path = args.out / f"{stamp}.json"
    png_path = args.out / f"{stamp}.png"
    has_chart = report.chart(
        png_path,
        runner.results,
        names,
        f"{env['postgres'].split(' on ')[0]}, {env['cores']} cores "
        f"{env['cpu_model']}; fsync/synchronous_commit on",
    )
    report.write_json(
        json_path,
        {
            "meta": {
                **env,
                "started": stamp,
                "elapsed_s": elapsed,
                "args": {k: str(v) for k, v in vars(args).items()},
                "interrupted": interrupted,
                "notes": {s.name: s.notes for s in systems},
            },
            "config": cfg,
            "results": runner.results,
            "summary": {
                f"{row.scenario}.{row.figure}": {
                    name: report.summary(
                        report.values(runner.results, row.scenario, name, row.figure)
                    )
                    for name in [*names, "postgres"]
                }
                for row in (*report.ROWS, *report.CEILING_ROWS)
                if row.scenario in runner.results
            },
            "targets": goals,
            "table": text,
        },
    )
    print()
    print(f"JSON: {json_path}")
    if has_chart:
        print(f"chart: {png_path}")
    print(f"worker logs: {logdir}")
    return 130 if interrupted else 0


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        code = asyncio.run(main_async(args))
    except KeyboardInterrupt:
        kill_all()
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
