"""pgqueuer (asyncpg): one connection per worker, as its documentation sets it up."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import json
import signal
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import Any, ClassVar

import asyncpg

from benchmarks.systems.base import BenchClient, System


def batch_size_for(concurrency: int) -> int:
    """pgqueuer's default batch is 10, and max_concurrent_tasks must be >= 2 x batch."""
    return max(1, min(10, concurrency // 2))


def max_tasks_for(concurrency: int) -> int:
    return max(concurrency, 2 * batch_size_for(concurrency))


def _payload(**values: Any) -> bytes:
    return json.dumps(values).encode()


class PgqueuerClient(BenchClient):
    def __init__(self, queries: Any) -> None:
        self.q = queries

    async def enqueue_noop(self, i: int) -> int:
        (job_id,) = await self.q.enqueue("noop", _payload(i=i))
        return int(job_id)

    async def enqueue_noop_batch(self, numbers: Sequence[int]) -> list[int]:
        n = len(numbers)
        ids = await self.q.enqueue(["noop"] * n, [_payload(i=i) for i in numbers], [0] * n)
        return [int(i) for i in ids]

    async def enqueue_tick_batch(self, numbers: Sequence[int]) -> list[int]:
        n = len(numbers)
        ids = await self.q.enqueue(["tick"] * n, [_payload(i=i) for i in numbers], [0] * n)
        return [int(i) for i in ids]

    async def enqueue_mark(self, key: str) -> int:
        (job_id,) = await self.q.enqueue("mark", _payload(key=key))
        return int(job_id)

    async def enqueue_sleeper(self, key: str, seconds: float) -> int:
        (job_id,) = await self.q.enqueue("sleeper", _payload(key=key, seconds=seconds))
        return int(job_id)

    async def enqueue_sleepers(self, keys: Sequence[str], seconds: float) -> list[int]:
        n = len(keys)
        ids = await self.q.enqueue(
            ["sleeper"] * n, [_payload(key=k, seconds=seconds) for k in keys], [0] * n
        )
        return [int(i) for i in ids]

    async def cancel(self, job_id: Any) -> None:
        await self.q.mark_job_as_cancelled([job_id])


class PgqueuerSystem(System):
    name = "pgqueuer"
    unsupported: ClassVar[dict[str, str]] = {
        "crash4": "its crash requeue is the 30 s heartbeat timeout (see crash), so four kills "
        "would take minutes and show only that timeout again; and c=1 is not expressible "
        "(max_concurrent_tasks >= 2 x batch_size)",
        "crash_handed_off": "no hand-off: every running job is alike (see crash)",
    }
    tables = ("public.pgqueuer", "public.pgqueuer_log")
    notes = (
        "PgQueuer on one asyncpg connection; run(max_concurrent_tasks=c, batch_size=min(10, c//2)),"
        " other settings default (heartbeat_timeout 30 s, dequeue_timeout 30 s)"
    )

    def version(self) -> str:
        return importlib.metadata.version("pgqueuer")

    async def reset(self, dsn: str) -> None:
        from pgqueuer import AsyncpgDriver, Queries

        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public")
            await Queries(AsyncpgDriver(conn)).install()
        finally:
            await conn.close()

    @contextlib.asynccontextmanager
    async def client(self, dsn: str) -> AsyncIterator[BenchClient]:
        from pgqueuer import AsyncpgDriver, Queries

        conn = await asyncpg.connect(dsn)
        try:
            yield PgqueuerClient(Queries(AsyncpgDriver(conn)))
        finally:
            await conn.close()

    async def wait_ready(self, worker: Any, conn: asyncpg.Connection, timeout: float) -> bool:
        # The worker's single connection runs LISTEN and then dequeues on it, so its
        # pg_stat_activity line can't show readiness: the harness prints READY once a
        # health-check NOTIFY has come back through the running QueueManager's listener.
        return await worker.wait_ready_line(timeout)

    async def remaining(self, conn: asyncpg.Connection) -> int:
        return int(await conn.fetchval("SELECT count(*) FROM pgqueuer"))

    async def drain_window(self, conn: asyncpg.Connection) -> tuple[float, float, int]:
        row = await conn.fetchrow(
            "SELECT extract(epoch FROM min(created) FILTER (WHERE status = 'picked'))::float8 "
            "AS first, extract(epoch FROM max(created) FILTER (WHERE status = 'successful'))"
            "::float8 AS last, count(*) FILTER (WHERE status = 'successful') AS done "
            "FROM pgqueuer_log WHERE entrypoint = 'noop'"
        )
        return row["first"], row["last"], int(row["done"])

    async def finished_times(self, conn: asyncpg.Connection) -> list[float]:
        rows = await conn.fetch(
            "SELECT extract(epoch FROM created)::float8 AS t FROM pgqueuer_log "
            "WHERE entrypoint = 'tick' AND status = 'successful'"
        )
        return [r["t"] for r in rows]

    # -- the worker process -------------------------------------------------------------

    async def run_worker(self, dsn: str, concurrency: int) -> None:
        from pgqueuer import AsyncpgDriver, PgQueuer
        from pgqueuer.errors import FailingListenerError
        from pgqueuer.models import Context, Job

        from benchmarks.marks import emit, ready
        from benchmarks.marks import tick as count_tick

        conn = await asyncpg.connect(dsn)
        pgq = PgQueuer(AsyncpgDriver(conn))

        @pgq.entrypoint("noop")
        async def noop(job: Job) -> None:
            pass

        @pgq.entrypoint("tick")
        async def tick(job: Job) -> None:
            count_tick()

        @pgq.entrypoint("mark")
        async def mark(job: Job) -> None:
            emit("start", json.loads(job.payload or b"{}")["key"])

        @pgq.entrypoint("sleeper", accepts_context=True)
        async def sleeper(job: Job, ctx: Context) -> None:
            args = json.loads(job.payload or b"{}")
            emit("start", args["key"])
            # pgqueuer's documented cancellation: run inside the job's cancel scope.
            with ctx.cancellation:
                try:
                    await asyncio.sleep(args["seconds"])
                except asyncio.CancelledError:
                    emit("cancelled", args["key"])
                    raise

        loop = asyncio.get_running_loop()
        # What `pgq run` does on SIGTERM/SIGINT: set the shutdown event.
        loop.add_signal_handler(signal.SIGTERM, pgq.shutdown.set)
        loop.add_signal_handler(signal.SIGINT, pgq.shutdown.set)
        run = asyncio.create_task(
            pgq.run(
                batch_size=batch_size_for(concurrency),
                max_concurrent_tasks=max_tasks_for(concurrency),
            )
        )
        while not run.done():
            try:
                await pgq.qm.listener_healthy(timeout=timedelta(seconds=0.5))
            except (FailingListenerError, KeyError, AttributeError, RuntimeError):
                await asyncio.sleep(0.05)
                continue
            ready()
            break
        try:
            await run
        finally:
            await conn.close()
