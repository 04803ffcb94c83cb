"""What the observability hooks cost per job, in-process: a `JobRun` driven through the
app's job hooks (start, around, end) in a loop, as the worker drives one per attempt, with
each part configured as drain_observed configures it (systems/asyncjobs_tasks.py).

    python -m benchmarks.hooks_cost [--jobs 20000] [--rounds 3] [--profile trace]

Prints the best of `rounds` in µs of CPU per job (the process's: the SDK's export thread
counts too) for: no part (the hooks machinery only), each part alone, and all of them, each
in a process of its own (an SDK's threads outlive its measurement). `--profile PART` runs
cProfile over that part instead.

Then the SDK's own floor, without asyncjobs: one span started and ended with no attribute
(`sdk-span`), one histogram measurement with no attribute (`sdk-histogram`), on providers
set up as drain_observed sets them up. Whatever asyncjobs does around them, a job recorded
by the SDK costs at least one span and two measurements (run and wait time).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import subprocess
import sys
import time
import uuid

import asyncjobs
from asyncjobs.hooks import Around, Hooks, JobRun, call_each
from benchmarks.systems.asyncjobs_tasks import _observe, sdk_providers

PARTS = {
    "hooks": set[str](),
    "prometheus": {"prometheus"},
    "otel-metrics": {"otel-metrics"},
    "trace": {"trace"},
    "trace-linked": {"trace"},
    "trace-sampled": {"trace-sampled"},
    "sampled+prometheus": {"trace-sampled", "prometheus"},
    "all": {"trace", "otel-metrics", "prometheus"},
}
FLOORS = ("sdk-span", "sdk-histogram")
# A traceparent as an enqueue's span stores it: "trace-linked" runs jobs that carry one.
TRACEPARENT = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}


def _app(parts: set[str]) -> asyncjobs.App:
    app = asyncjobs.App()
    _observe(app, parts)
    if "prometheus" in parts:
        from asyncjobs.observability.prometheus import PrometheusMetrics

        PrometheusMetrics().install(app)
    # A hook so that the machinery runs even with no part on (as the worker would not).
    app.hooks.on_job_end(lambda run: None)
    return app


async def _drive(hooks: Hooks, jobs: int, context: dict[str, str] | None) -> float:
    worker_id = uuid.uuid4()
    started = time.process_time()
    for i in range(jobs):
        # What Worker._run_observed does per attempt, without the job.
        run = JobRun(
            job_id=i,
            task="bench.noop",
            queue="default",
            attempt=1,
            max_attempts=3,
            worker_id=worker_id,
            waited=0.002,
            trace_context=context,
        )
        if hooks.job_start:
            await call_each(hooks.job_start, run)
        around = Around(hooks.job_around, run) if hooks.job_around else None
        if around is not None:
            await around.__aenter__()
        begun = time.perf_counter()
        run.duration = time.perf_counter() - begun
        run.outcome = "succeeded"
        if around is not None:
            await around.__aexit__(None, None, None)
        if hooks.job_end:
            await call_each(hooks.job_end, run)
    return (time.process_time() - started) / jobs * 1e6


def _floor(name: str, jobs: int, rounds: int) -> float:
    """The SDK alone: `name` (FLOORS) done `jobs` times; the best of `rounds`."""
    tracer_provider, meter_provider = sdk_providers({"trace", "otel-metrics"})
    tracer = tracer_provider.get_tracer("floor")
    histogram = meter_provider.get_meter("floor").create_histogram("floor", unit="s")

    def once(count: int) -> float:
        started = time.process_time()
        if name == "sdk-span":
            for _ in range(count):
                tracer.start_span("process default").end()
        else:
            for _ in range(count):
                histogram.record(0.001)
        return (time.process_time() - started) / count * 1e6

    once(1000)
    return min(once(jobs) for _ in range(rounds))


async def _measure(name: str, jobs: int, rounds: int) -> float:
    if name in FLOORS:
        return _floor(name, jobs, rounds)
    app = _app(PARTS[name])
    context = TRACEPARENT if name == "trace-linked" else None
    await _drive(app.hooks, 1000, context)  # warm-up: caches, the SDK's first spans
    return min([await _drive(app.hooks, jobs, context) for _ in range(rounds)])


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.hooks_cost")
    p.add_argument("--jobs", type=int, default=20_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--profile", choices=sorted(PARTS))
    p.add_argument("--only", choices=[*sorted(PARTS), *FLOORS], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.only:
        print(f"{asyncio.run(_measure(args.only, args.jobs, args.rounds)):.1f}")
        return
    if args.profile:
        app = _app(PARTS[args.profile])
        context = TRACEPARENT if args.profile == "trace-linked" else None
        asyncio.run(_drive(app.hooks, 1000, context))
        profiler = cProfile.Profile()
        profiler.enable()
        asyncio.run(_drive(app.hooks, args.jobs, context))
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
        return
    for name in [*PARTS, *FLOORS]:
        argv = [sys.executable, "-m", "benchmarks.hooks_cost", "--only", name]
        argv += ["--jobs", str(args.jobs), "--rounds", str(args.rounds)]
        cost = float(subprocess.run(argv, check=True, capture_output=True, text=True).stdout)
        print(f"{name:<18} {cost:8.1f} µs/job", flush=True)


if __name__ == "__main__":
    main()
