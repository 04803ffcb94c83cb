"""The scenarios. Each function measures one system once and returns a dict of figures.

Figures are plain numbers; a figure that hit its cap is `math.inf` (printed ">cap") and a
scenario a system can't do raises `NotApplicable` with the reason.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import math
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg

from benchmarks.common import (
    WorkerProcess,
    dead_tuples,
    ensure_database,
    latency_summary,
    percentile,
    terminate_backends,
    with_database,
)
from benchmarks.systems.base import BenchClient, System


class NotApplicable(Exception):
    """The system's API can't do this scenario; the message says why."""


@dataclasses.dataclass
class Config:
    """Sizes and caps; `quick()` is the ~3-4 minute smoke run."""

    enqueue_single: int = 2000
    enqueue_batch_total: int = 20_000
    batch_size: int = 1000
    drain_jobs: int = 20_000
    drain_timeout: float = 300.0
    pickup_jobs: int = 200
    pickup_gap: float = 0.020
    cancels: int = 30
    crash_job_seconds: float = 30.0
    crash_cap: float = 120.0
    crash4_cap: float = 30.0  # per kill in crash4 / crash_handed_off
    shutdown_jobs: int = 100
    shutdown_kill_after: float = 10.0  # an orchestrator's SIGKILL after SIGTERM
    shutdown_cap: float = 120.0
    memory_jobs: int = 100
    held_duration: float = 90.0
    held_backlog: int = 2000
    held_window: float = 5.0
    pgbench_seconds: int = 10
    pgbench_scale: int = 10
    pgbench_clients: int = 10

    @classmethod
    def quick(cls) -> Config:
        return cls(
            enqueue_single=500,
            enqueue_batch_total=5000,
            drain_jobs=3000,
            drain_timeout=120.0,
            pickup_jobs=50,
            cancels=10,
            crash_cap=25.0,
            crash4_cap=10.0,
            shutdown_kill_after=5.0,
            shutdown_cap=25.0,
            held_duration=10.0,
            held_window=2.0,
            pgbench_seconds=5,
            pgbench_scale=1,
        )


class Bench:
    """Where the systems live and how their worker processes are started."""

    def __init__(self, dsn: str, config: Config, logdir: Path) -> None:
        self.dsn = dsn
        self.config = config
        self.logdir = logdir
        self.base = dsn.rsplit("/", 1)[-1].split("?", maxsplit=1)[0] or "bench"
        self._workers = 0

    def system_dsn(self, system: System) -> str:
        return with_database(self.dsn, f"{self.base}_{system.name}")

    async def fresh(self, system: System) -> str:
        """Drop and recreate the system's objects (its database is created once)."""
        dsn = self.system_dsn(system)
        await ensure_database(self.dsn, f"{self.base}_{system.name}")
        await terminate_backends(dsn)
        await system.reset(dsn)
        return dsn

    async def worker(
        self,
        system: System,
        concurrency: int,
        label: str,
        *,
        ready: bool = True,
        hand_off_after: float | None = None,
        observe: bool = False,
    ) -> WorkerProcess:
        """Start a worker process; by default wait until it listens for jobs. Workers get
        the system's defaults except `hand_off_after` when a scenario gives one; `observe`:
        with tracing and metrics on (asyncjobs only)."""
        import os

        dsn = self.system_dsn(system)
        argv, extra = system.worker_command(
            dsn, concurrency, hand_off_after=hand_off_after, observe=observe
        )
        env = {**os.environ, **extra, "PYTHONUNBUFFERED": "1"}
        self._workers += 1
        log = self.logdir / f"{system.name}.log"
        worker = await WorkerProcess(argv, env, log, f"{label} c={concurrency}").start()
        if ready:
            conn = await asyncpg.connect(dsn)
            try:
                ok = await system.wait_ready(worker, conn, 60.0)
            finally:
                await conn.close()
            if not ok:
                await worker.stop(2)
                raise RuntimeError(f"{system.name} worker not ready within 60 s (see {log})")
        return worker


async def _enqueue_backlog(client: BenchClient, total: int, batch: int, start: int = 0) -> None:
    for first in range(start, start + total, batch):
        await client.enqueue_noop_batch(range(first, min(first + batch, start + total)))


# -- 1. enqueue ------------------------------------------------------------------------


async def enqueue(bench: Bench, system: System) -> dict[str, Any]:
    cfg = bench.config
    dsn = await bench.fresh(system)
    async with system.client(dsn) as client:
        for i in range(20):  # warm-up: connections, prepared statements
            await client.enqueue_noop(i)
        await client.enqueue_noop_batch(range(100))
        started = time.perf_counter()
        for i in range(cfg.enqueue_single):
            await client.enqueue_noop(i)
        single = cfg.enqueue_single / (time.perf_counter() - started)
        started = time.perf_counter()
        await _enqueue_backlog(client, cfg.enqueue_batch_total, cfg.batch_size)
        batch = cfg.enqueue_batch_total / (time.perf_counter() - started)
    return {"single_jobs_per_s": single, "batch_jobs_per_s": batch}


# -- 2. drain --------------------------------------------------------------------------


async def drain(
    bench: Bench, system: System, concurrency: int, *, observe: bool = False
) -> dict[str, Any]:
    """`observe`: the worker traces every job and serves metrics (see BENCH_OBSERVE in
    systems/asyncjobs_tasks.py)."""
    if observe and system.name != "asyncjobs":
        raise NotApplicable("asyncjobs' own tracing and metrics")
    cfg = bench.config
    dsn = await bench.fresh(system)
    async with system.client(dsn) as client:
        await _enqueue_backlog(client, cfg.drain_jobs, cfg.batch_size)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("VACUUM ANALYZE")  # same starting point for every system
        worker = await bench.worker(system, concurrency, "drain", ready=False, observe=observe)
        try:
            deadline = time.monotonic() + cfg.drain_timeout
            remaining = await system.remaining(conn)
            while remaining > 0 and time.monotonic() < deadline and worker.alive:
                await asyncio.sleep(0.25)
                remaining = await system.remaining(conn)
            seen_done = time.time()
        finally:
            await worker.stop(5)
        first, last, done = await system.drain_window(conn)
    finally:
        await conn.close()
    if not done or first is None or last is None:
        raise RuntimeError(f"no job finished ({remaining} remaining)")
    seconds = last - first
    return {
        "jobs_per_s": done / seconds if seconds > 0 else math.inf,
        "jobs": done,
        "complete": remaining == 0,
        "seconds": seconds,
        "wall_from_spawn_s": seen_done - worker.started_at,
    }


# -- 3. pickup latency -----------------------------------------------------------------


async def pickup(bench: Bench, system: System) -> dict[str, Any]:
    cfg = bench.config
    dsn = await bench.fresh(system)
    worker = await bench.worker(system, 10, "pickup")
    try:
        await asyncio.sleep(1.0)
        async with system.client(dsn) as client:
            for i in range(5):  # warm-up
                await client.enqueue_mark(f"w{i}")
                await worker.wait_mark("start", f"w{i}", 10)
            await asyncio.sleep(0.2)
            sent: dict[str, float] = {}
            for i in range(cfg.pickup_jobs):
                key = f"p{i}"
                sent[key] = time.time()
                await client.enqueue_mark(key)
                await asyncio.sleep(cfg.pickup_gap)
            got = await worker.wait_marks("start", sent, 15)
    finally:
        await worker.stop(5)
    ms = [(got[k] - sent[k]) * 1000 for k in sent if k in got]
    return {**latency_summary(ms, len(sent) - len(ms)), "samples_ms": ms}


# -- 4. cancel latency -----------------------------------------------------------------


async def cancel(bench: Bench, system: System) -> dict[str, Any]:
    cfg = bench.config
    dsn = await bench.fresh(system)
    worker = await bench.worker(system, 10, "cancel")
    after_return: list[float] = []
    after_call: list[float] = []
    missing = 0
    warm = 2
    try:
        async with system.client(dsn) as client:
            for i in range(warm + cfg.cancels):
                key = f"c{i}"
                job_id = await client.enqueue_sleeper(key, 3600)
                if await worker.wait_mark("start", key, 15) is None:
                    raise RuntimeError(f"sleeper {key} did not start within 15 s")
                await asyncio.sleep(0.05)  # it is inside its sleep now
                called = time.time()
                await client.cancel(job_id)
                returned = time.time()
                interrupted = await worker.wait_mark("cancelled", key, 15)
                if i < warm:
                    continue
                if interrupted is None:
                    missing += 1
                else:
                    after_return.append((interrupted - returned) * 1000)
                    after_call.append((interrupted - called) * 1000)
    finally:
        await worker.stop(5)
    out = latency_summary(after_return, missing)
    from_start = latency_summary(after_call, missing)
    out["from_call_start_p50_ms"] = from_start["p50_ms"]
    out["from_call_start_p99_ms"] = from_start["p99_ms"]
    out["samples_ms"] = after_return
    out["from_call_start_samples_ms"] = after_call
    return out


# -- 5. crash requeue ------------------------------------------------------------------

# asyncjobs' longest hand-off (its worker setting's maximum): the `crash` scenario kills
# worker A about 2-3 s into the job, so with this its job is still under its claim, the
# path the figure measured before hand-off existed; `crash_handed_off` measures the other.
CLAIMED_HAND_OFF = 8.0
# `crash_handed_off`: the job leaves its claim for the worker's lease at once.
QUICK_HAND_OFF = 0.2
# `crash_handed_off`: B has been up this long (from its spawn) when A is killed.
SETTLED = 3.0


async def _handed_off_at_kill(system: System, dsn: str) -> int | None:
    conn = await asyncpg.connect(dsn)
    try:
        return await system.handed_off(conn)
    finally:
        await conn.close()


async def _wait_handed_off(system: System, dsn: str, count: int, timeout: float) -> int | None:
    """Wait until `count` running jobs are handed off (asyncjobs); None for other systems."""
    conn = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + timeout
        while True:
            n = await system.handed_off(conn)
            if n is None or n >= count or time.monotonic() > deadline:
                return n
            await asyncio.sleep(0.05)
    finally:
        await conn.close()


async def _wait_any(
    workers: Sequence[WorkerProcess], kind: str, key: str, timeout: float
) -> float | None:
    """The time job `key` reported `kind` on any of `workers` (the job's own clock, so the
    10 ms polling here adds nothing to the figure)."""
    deadline = time.monotonic() + timeout
    while True:
        for w in workers:
            at = w.mark(kind, key)
            if at is not None:
                return at
        if time.monotonic() > deadline:
            return None
        await asyncio.sleep(0.01)


async def crash(bench: Bench, system: System) -> dict[str, Any]:
    """Worker A runs a long job under its claim; B (concurrency 10) has been ready for 1 s
    when A is SIGKILLed: the time until the job runs again on B."""
    return await _crash_one(bench, system, "crash", handed_off=False)


async def crash_handed_off(bench: Bench, system: System) -> dict[str, Any]:
    """`crash` with the job handed off (it runs under worker A's lease, no claim open)."""
    return await _crash_one(bench, system, "crash_handed_off", handed_off=True)


async def _crash_one(
    bench: Bench, system: System, name: str, *, handed_off: bool
) -> dict[str, Any]:
    if name in system.unsupported:
        raise NotApplicable(system.unsupported[name])
    cfg = bench.config
    dsn = await bench.fresh(system)
    hand_off = QUICK_HAND_OFF if handed_off else CLAIMED_HAND_OFF
    a = await bench.worker(system, 1, f"{name} A", hand_off_after=hand_off)
    b: WorkerProcess | None = None
    result: dict[str, Any] = {}
    try:
        async with system.client(dsn) as client:
            await client.enqueue_sleeper("victim", cfg.crash_job_seconds)
            started = await a.wait_mark("start", "victim", 20)
            if started is None:
                raise RuntimeError("the job did not start on worker A")
        b = await bench.worker(system, 10, f"{name} B")
        if handed_off:
            if await _wait_handed_off(system, dsn, 1, 10) != 1:
                raise RuntimeError("the job was not handed off within 10 s")
            # A settled peer: asyncjobs' B takes a dead worker's job over only some 2 s
            # after it started (see benchmarks/README.md, 2026-11-30), which `crash` (B
            # ready for 1 s) shows; here, as in crash4, B has been up for SETTLED seconds.
            await asyncio.sleep(max(1.0, b.started_at + SETTLED - time.time()))
        else:
            await asyncio.sleep(1.0)
            result["handed_off_at_kill"] = await _handed_off_at_kill(system, dsn)
        killed = time.time()
        await a.kill()
        cap = cfg.crash4_cap if handed_off else cfg.crash_cap
        again = await b.wait_mark("start", "victim", cap)
    finally:
        await a.stop(1)
        if b is not None:
            await b.stop(3)
    return {
        "requeue_ms": (again - killed) * 1000 if again is not None else math.inf,
        "job_age_at_kill_s": killed - started,
        "b_up_at_kill_s": killed - b.started_at,
        **result,
    }


async def crash4(bench: Bench, system: System) -> dict[str, Any]:
    """Four workers of concurrency 1, three busy with long jobs and one idle. Each busy one
    is SIGKILLed in turn, a replacement joining after each kill; then, with two busy (the
    third job cancelled) and two idle, two are killed at once. Times from the kill until the
    job runs again on another worker. asyncjobs' jobs are handed off (default 2 s) before
    each kill: the long-job case."""
    if "crash4" in system.unsupported:
        raise NotApplicable(system.unsupported["crash4"])
    cfg = bench.config
    dsn = await bench.fresh(system)
    workers: list[WorkerProcess] = []
    dead: list[WorkerProcess] = []
    keys = [f"v{i}" for i in range(3)]
    singles: list[float] = []
    pair: list[float] = []
    handed: list[int | None] = []
    try:
        for i in range(4):
            workers.append(await bench.worker(system, 1, f"crash4 W{i}"))
        async with system.client(dsn) as client:
            ids = {k: await client.enqueue_sleeper(k, 3600) for k in keys}
            running: dict[str, WorkerProcess] = {}
            for k in keys:
                at = await _wait_any(workers, "start", k, 20)
                if at is None:
                    raise RuntimeError(f"job {k} did not start")
                running[k] = next(w for w in workers if w.mark("start", k) is not None)
            if len(set(map(id, running.values()))) != 3:
                raise RuntimeError("the three jobs did not start on three workers")

            async def kill(victims: Sequence[str]) -> list[float]:
                handed.append(await _wait_handed_off(system, dsn, len(running), 10))
                # Every worker settled (up SETTLED s), at least 1 s after the last change.
                newest = max(w.started_at for w in workers)
                await asyncio.sleep(max(1.0, newest + SETTLED - time.time()))
                gone = [running[k] for k in victims]
                killed = time.time()
                await asyncio.gather(*(w.kill() for w in gone))
                for w in gone:
                    workers.remove(w)
                    dead.append(w)
                out = []
                for k in victims:
                    again = await _wait_any(workers, "start", k, cfg.crash4_cap)
                    out.append((again - killed) * 1000 if again is not None else math.inf)
                    if again is not None:
                        running[k] = next(w for w in workers if w.mark("start", k) == again)
                return out

            originals = dict(running)
            for n, k in enumerate(keys):
                if running[k] is not originals[k]:
                    raise RuntimeError(f"job {k} moved before its worker was killed")
                singles += await kill([k])
                workers.append(await bench.worker(system, 1, f"crash4 R{n}"))
            # Two at once, with two idle: cancel the third job, kill the other two.
            await client.cancel(ids[keys[2]])
            del running[keys[2]]
            await asyncio.sleep(0.5)
            pair = await kill(keys[:2])
    finally:
        for w in workers + dead:
            await w.stop(1)
    return {
        "one_median_ms": percentile(singles, 50),
        "one_max_ms": max(singles),
        "one_ms": singles,
        "pair_first_ms": min(pair),
        "pair_both_ms": max(pair),
        "pair_ms": pair,
        "handed_off_at_kills": handed,
    }


# -- 6. shutdown -----------------------------------------------------------------------


async def shutdown(bench: Bench, system: System) -> dict[str, Any]:
    cfg = bench.config
    dsn = await bench.fresh(system)
    keys = [f"s{i}" for i in range(cfg.shutdown_jobs)]
    a = await bench.worker(system, cfg.shutdown_jobs, "shutdown A")
    b: WorkerProcess | None = None
    out: dict[str, Any] = {}
    try:
        async with system.client(dsn) as client:
            await client.enqueue_sleepers(keys, 3600)
            started = await a.wait_marks("start", keys, 30)
            if len(started) < len(keys):
                raise RuntimeError(f"only {len(started)} of {len(keys)} jobs started on A")
        b = await bench.worker(system, cfg.shutdown_jobs, "shutdown B")
        await asyncio.sleep(0.5)
        term = time.time()
        a.send(signal.SIGTERM)
        exited = await a.wait_exit(cfg.shutdown_kill_after)
        gone = time.time()
        out["exit_ms"] = (gone - term) * 1000 if exited else math.inf
        if not exited:
            await a.kill()  # what an orchestrator does after its grace period
            gone = time.time()
        out["sigkilled"] = not exited
        if "shutdown_requeue" in system.unsupported:
            out["requeue_na"] = system.unsupported["shutdown_requeue"]
            return out
        left = cfg.shutdown_cap - (time.time() - term)
        again = await b.wait_marks("start", keys, max(left, 0.1))
        out["restarted"] = len(again)
        if len(again) == len(keys):
            last = max(again.values())
            out["all_restarted_ms"] = (last - term) * 1000
            out["restarted_after_exit_ms"] = (last - gone) * 1000
        else:
            out["all_restarted_ms"] = math.inf
            out["restarted_after_exit_ms"] = math.inf
        return out
    finally:
        await a.stop(1)
        if b is not None:
            await b.stop(3)


# -- 7. memory -------------------------------------------------------------------------


async def memory(bench: Bench, system: System) -> dict[str, Any]:
    cfg = bench.config
    dsn = await bench.fresh(system)
    keys = [f"m{i}" for i in range(cfg.memory_jobs)]
    worker = await bench.worker(system, cfg.memory_jobs, "memory")
    conn = await asyncpg.connect(dsn)
    try:
        await asyncio.sleep(2.0)
        idle = worker.rss()
        idle_sessions = len(await worker.sessions(conn))
        async with system.client(dsn) as client:
            await client.enqueue_sleepers(keys, 3600)
            started = await worker.wait_marks("start", keys, 30)
        if len(started) < len(keys):
            raise RuntimeError(f"only {len(started)} of {len(keys)} jobs started")
        await asyncio.sleep(1.0)
        busy = worker.rss()
        busy_sessions = len(await worker.sessions(conn))
    finally:
        await conn.close()
        await worker.stop(3)
    mib = 1024 * 1024
    return {
        "rss_idle_mib": idle / mib,
        "rss_busy_mib": busy / mib,
        "sessions_idle": idle_sessions,
        "sessions_busy": busy_sessions,
    }


# -- 8. held-transaction cost ----------------------------------------------------------


async def held(bench: Bench, system: System, *, with_long_job: bool) -> dict[str, Any]:
    """Short jobs for `held_duration` seconds through one worker (c=11: 10 slots for short
    jobs, 1 for the long one), with or without one long job running the whole time.

    The backlog is kept steady: the benchmark tops it up to `held_backlog` jobs not yet
    executed (the worker reports executed jobs through `marks.tick`), so the live queue stays
    small and what grows is only what the database can't clean up.
    """
    cfg = bench.config
    dsn = await bench.fresh(system)
    probe = await asyncpg.connect(dsn)
    probes: list[tuple[float, float]] = []
    try:
        worker = await bench.worker(system, 11, "held" if with_long_job else "baseline")
        try:
            async with system.client(dsn) as client:
                if with_long_job:
                    await client.enqueue_sleeper("long", cfg.held_duration * 10 + 600)
                    if await worker.wait_mark("start", "long", 20) is None:
                        raise RuntimeError("the long job did not start")
                begin = time.time()
                end = begin + cfg.held_duration

                async def probing() -> None:
                    while time.time() < end:
                        took = await system.claim_probe(probe)
                        if took is None:
                            return
                        probes.append((time.time() - begin, took * 1000))
                        await asyncio.sleep(0.25)

                prober = asyncio.create_task(probing())
                enqueued = 0
                while time.time() < end:
                    if enqueued - worker.ticks < cfg.held_backlog:
                        await client.enqueue_tick_batch(range(enqueued, enqueued + 500))
                        enqueued += 500
                    else:
                        await asyncio.sleep(0.01)
                await prober
            await asyncio.sleep(1.2)  # let backends flush their table statistics
            tuples = await dead_tuples(probe, system.tables)
            xmin_age = await probe.fetchval(
                "SELECT max(age(backend_xmin)) FROM pg_stat_activity "
                "WHERE datname = current_database()"
            )
        finally:
            await worker.stop(2)
        finished = sorted(t for t in await system.finished_times(probe) if begin <= t <= end)
    finally:
        await probe.close()
    windows = []
    w = cfg.held_window
    edges = [begin + i * w for i in range(int(cfg.held_duration // w) + 1)]
    for lo, hi in itertools.pairwise(edges):
        windows.append(sum(1 for t in finished if lo <= t < hi) / w)
    quarters = [
        [
            ms
            for at, ms in probes
            if q * cfg.held_duration / 4 <= at < (q + 1) * cfg.held_duration / 4
        ]
        for q in range(4)
    ]
    early, late = quarters[0], quarters[3]
    out: dict[str, Any] = {
        "jobs_per_s": len(finished) / cfg.held_duration,
        "first_window_jobs_per_s": windows[0] if windows else math.nan,
        "last_window_jobs_per_s": windows[-1] if windows else math.nan,
        "window_s": w,
        "windows_jobs_per_s": windows,
        "enqueued": enqueued,
        "backlog_target": cfg.held_backlog,
        "tables": tuples,
        "dead_tuples": sum(t["dead"] for t in tuples.values()),
        "oldest_xmin_age": int(xmin_age or 0),
    }
    if probes:
        all_ms = [ms for _, ms in probes]
        out.update(
            {
                "claim_p50_ms": percentile(all_ms, 50),
                "claim_p99_ms": percentile(all_ms, 99),
                "claim_first_quarter_p50_ms": percentile(early, 50) if early else math.nan,
                "claim_last_quarter_p50_ms": percentile(late, 50) if late else math.nan,
                **{
                    f"claim_q{q + 1}_p50_ms": percentile(ms, 50) if ms else math.nan
                    for q, ms in enumerate(quarters)
                },
                "claim_probes": [[round(a, 3), round(m, 3)] for a, m in probes],
            }
        )
    return out


# -- PostgreSQL's own ceiling ----------------------------------------------------------


def find_pgbench() -> str | None:
    import glob
    import shutil

    found = shutil.which("pgbench")
    if found:
        return found
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pgbench"), reverse=True)
    return candidates[0] if candidates else None


async def _run(argv: Sequence[str], timeout: float) -> str:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    text = out.decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({proc.returncode}): {text[-500:]}")
    return text


def _tps(text: str) -> float:
    for line in text.splitlines():
        if line.startswith("tps =") and "without initial" in line:
            return float(line.split()[2])
    for line in text.splitlines():
        if line.startswith("tps ="):
            return float(line.split()[2])
    raise RuntimeError(f"no tps in pgbench output: {text[-300:]}")


SKIP_LOCKED_SQL = (
    "DELETE FROM bench_skiplock WHERE id = (SELECT id FROM bench_skiplock ORDER BY id "
    "LIMIT 1 FOR UPDATE SKIP LOCKED);\n"
)


class PgbenchCeiling:
    """pgbench TPC-B and a one-row `DELETE ... FOR UPDATE SKIP LOCKED` loop."""

    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.pgbench = find_pgbench()
        self.dbname = f"{bench.base}_pgbench"
        self.dsn = with_database(bench.dsn, self.dbname)
        self._initialized = False

    async def setup(self) -> None:
        cfg = self.bench.config
        await ensure_database(self.bench.dsn, self.dbname)
        await terminate_backends(self.dsn)
        assert self.pgbench is not None
        await _run([self.pgbench, "-i", "-q", "-s", str(cfg.pgbench_scale), self.dsn], 600)
        self._initialized = True

    async def measure(self) -> dict[str, Any]:
        if self.pgbench is None:
            raise NotApplicable("pgbench not found (PATH, /usr/lib/postgresql/*/bin)")
        cfg = self.bench.config
        if not self._initialized:
            await self.setup()
        clients = ["-c", str(cfg.pgbench_clients), "-j", "2", "-T", str(cfg.pgbench_seconds)]
        tpcb = _tps(await _run([self.pgbench, "-n", *clients, self.dsn], cfg.pgbench_seconds + 120))
        conn = await asyncpg.connect(self.dsn)
        try:
            rows = max(300_000, cfg.pgbench_seconds * 20_000)
            await conn.execute(
                "DROP TABLE IF EXISTS bench_skiplock; "
                "CREATE TABLE bench_skiplock (id bigserial PRIMARY KEY, payload text NOT NULL)"
            )
            await conn.execute(
                "INSERT INTO bench_skiplock (payload) SELECT 'x' FROM generate_series(1, $1)", rows
            )
            await conn.execute("VACUUM ANALYZE bench_skiplock")
        finally:
            await conn.close()
        script = self.bench.logdir / "skiplock.sql"
        script.parent.mkdir(parents=True, exist_ok=True)
        script.write_text(SKIP_LOCKED_SQL)
        skip = _tps(
            await _run(
                [self.pgbench, "-n", *clients, "-f", str(script), self.dsn],
                cfg.pgbench_seconds + 120,
            )
        )
        return {"tpcb_tps": tpcb, "skip_locked_delete_tps": skip, "clients": cfg.pgbench_clients}
