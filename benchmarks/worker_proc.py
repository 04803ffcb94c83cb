"""One worker process of a benchmarked system: `python -m benchmarks.worker_proc SYSTEM DSN N`.

pgqueuer and procrastinate workers run here (each handles SIGTERM its own way, as its CLI
does); asyncjobs runs through its own CLI unless `--asyncjobs-runner harness` is given, in
which case it runs here with SIGTERM/SIGINT calling `worker.stop()`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys


async def run_asyncjobs(dsn: str, concurrency: int) -> None:
    import anyio

    from benchmarks.marks import ready
    from benchmarks.systems import asyncjobs_tasks

    asyncjobs_tasks.app.dsn = dsn
    hand_off = os.environ.get("BENCH_HAND_OFF_AFTER")  # set only by scenarios that need it
    worker = (
        asyncjobs_tasks.app.worker(concurrency=concurrency)
        if hand_off is None
        else asyncjobs_tasks.app.worker(concurrency=concurrency, hand_off_after=float(hand_off))
    )
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, worker.stop)
    loop.add_signal_handler(signal.SIGINT, worker.stop)
    async with anyio.create_task_group() as tg:
        await tg.start(worker.run)
        ready()


def main() -> None:
    name, dsn, concurrency = sys.argv[1], sys.argv[2], int(sys.argv[3])
    # Every system at WARNING: no per-job log lines anywhere.
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if name == "asyncjobs":
        asyncio.run(run_asyncjobs(dsn, concurrency))
        return
    from benchmarks.systems import get

    system = get(name)
    asyncio.run(system.run_worker(dsn, concurrency))  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
