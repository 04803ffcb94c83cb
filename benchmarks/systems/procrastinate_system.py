"""procrastinate (psycopg 3): the worker as `procrastinate worker` runs it, at its defaults."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
from collections.abc import AsyncIterator, Sequence
from typing import Any, ClassVar

import asyncpg

from benchmarks.systems.base import BenchClient, System

STALLED = (
    "no automatic requeue: a dead worker's jobs stay 'doing' until user code retries them "
    "(get_stalled_jobs + retry_job in a periodic task, worker heartbeat timeout 30 s)"
)


def make_app(dsn: str) -> Any:
    """A procrastinate App with the benchmark's three tasks."""
    import procrastinate

    from benchmarks.marks import emit
    from benchmarks.marks import tick as count_tick

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn))

    @app.task(name="noop")
    async def noop(i: int) -> None:
        pass

    @app.task(name="tick")
    async def tick(i: int) -> None:
        count_tick()

    @app.task(name="mark")
    async def mark(key: str) -> None:
        emit("start", key)

    @app.task(name="sleeper")
    async def sleeper(key: str, seconds: float) -> None:
        emit("start", key)
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            emit("cancelled", key)
            raise

    return app


class ProcrastinateClient(BenchClient):
    def __init__(self, app: Any) -> None:
        self.app = app
        self.noop = app.tasks["noop"]
        self.tick = app.tasks["tick"]
        self.mark = app.tasks["mark"]
        self.sleeper = app.tasks["sleeper"]

    async def enqueue_noop(self, i: int) -> int:
        return int(await self.noop.defer_async(i=i))

    async def enqueue_noop_batch(self, numbers: Sequence[int]) -> list[int]:
        return list(await self.noop.batch_defer_async(*({"i": i} for i in numbers)))

    async def enqueue_tick_batch(self, numbers: Sequence[int]) -> list[int]:
        return list(await self.tick.batch_defer_async(*({"i": i} for i in numbers)))

    async def enqueue_mark(self, key: str) -> int:
        return int(await self.mark.defer_async(key=key))

    async def enqueue_sleeper(self, key: str, seconds: float) -> int:
        return int(await self.sleeper.defer_async(key=key, seconds=seconds))

    async def enqueue_sleepers(self, keys: Sequence[str], seconds: float) -> list[int]:
        return list(
            await self.sleeper.batch_defer_async(*({"key": k, "seconds": seconds} for k in keys))
        )

    async def cancel(self, job_id: Any) -> None:
        # abort=True: a running job is asked to stop; async jobs get their task cancelled
        # when the worker hears of it (NOTIFY, or its 5 s abort poll).
        await self.app.job_manager.cancel_job_by_id_async(job_id, abort=True)


class ProcrastinateSystem(System):
    name = "procrastinate"
    unsupported: ClassVar[dict[str, str]] = {
        "crash": STALLED,
        "crash4": STALLED,
        "crash_handed_off": STALLED,
        "shutdown_requeue": STALLED,
    }
    tables = ("public.procrastinate_jobs", "public.procrastinate_events")
    notes = (
        "App.run_worker_async(concurrency=c), defaults (listen_notify, polling 5 s, "
        "shutdown waits for jobs), PsycopgConnector pool defaults"
    )

    def version(self) -> str:
        return importlib.metadata.version("procrastinate")

    async def reset(self, dsn: str) -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public")
        finally:
            await conn.close()
        app = make_app(dsn)
        async with app.open_async():
            await app.schema_manager.apply_schema_async()

    @contextlib.asynccontextmanager
    async def client(self, dsn: str) -> AsyncIterator[BenchClient]:
        app = make_app(dsn)
        async with app.open_async():
            yield ProcrastinateClient(app)

    async def remaining(self, conn: asyncpg.Connection) -> int:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')"
            )
        )

    async def drain_window(self, conn: asyncpg.Connection) -> tuple[float, float, int]:
        row = await conn.fetchrow(
            "SELECT extract(epoch FROM min(e.at) FILTER (WHERE e.type = 'started'))::float8 "
            "AS first, extract(epoch FROM max(e.at) FILTER (WHERE e.type = 'succeeded'))::float8"
            " AS last, count(*) FILTER (WHERE e.type = 'succeeded') AS done "
            "FROM procrastinate_events e JOIN procrastinate_jobs j ON j.id = e.job_id "
            "WHERE j.task_name = 'noop'"
        )
        return row["first"], row["last"], int(row["done"])

    async def finished_times(self, conn: asyncpg.Connection) -> list[float]:
        rows = await conn.fetch(
            "SELECT extract(epoch FROM e.at)::float8 AS t FROM procrastinate_events e "
            "JOIN procrastinate_jobs j ON j.id = e.job_id "
            "WHERE j.task_name = 'tick' AND e.type = 'succeeded'"
        )
        return [r["t"] for r in rows]

    # -- the worker process -------------------------------------------------------------

    async def run_worker(self, dsn: str, concurrency: int) -> None:
        app = make_app(dsn)
        async with app.open_async():
            # install_signal_handlers (default): SIGTERM/SIGINT stop the worker, which then
            # waits for running jobs (shutdown_graceful_timeout None), as `procrastinate worker`.
            await app.run_worker_async(concurrency=concurrency)
