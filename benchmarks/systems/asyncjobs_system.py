"""asyncjobs, as its users run it: `python -m asyncjobs worker MODULE:APP --concurrency N`."""

from __future__ import annotations

import contextlib
import importlib.metadata
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, ClassVar

import asyncpg

from benchmarks.common import python
from benchmarks.systems.base import BenchClient, System

SCHEMA = "asyncjobs"


class AsyncjobsClient(BenchClient):
    def __init__(self, client: Any, tasks: Any) -> None:
        self.c = client
        self.t = tasks

    async def enqueue_noop(self, i: int) -> int:
        return int(await self.c.enqueue(self.t.noop, i))

    async def enqueue_noop_batch(self, numbers: Sequence[int]) -> list[int]:
        return list(await self.c.enqueue_many(self.t.noop.call(i) for i in numbers))

    async def enqueue_tick_batch(self, numbers: Sequence[int]) -> list[int]:
        return list(await self.c.enqueue_many(self.t.tick.call(i) for i in numbers))

    async def enqueue_mark(self, key: str) -> int:
        return int(await self.c.enqueue(self.t.mark, key))

    async def enqueue_sleeper(self, key: str, seconds: float) -> int:
        return int(await self.c.enqueue(self.t.sleeper, key, seconds))

    async def enqueue_sleepers(self, keys: Sequence[str], seconds: float) -> list[int]:
        return list(await self.c.enqueue_many(self.t.sleeper.call(k, seconds) for k in keys))

    async def cancel(self, job_id: Any) -> None:
        await self.c.cancel(job_id)


class AsyncjobsSystem(System):
    name = "asyncjobs"
    unsupported: ClassVar[dict[str, str]] = {}
    tables = (f"{SCHEMA}.jobs", f"{SCHEMA}.queue")
    # "cli": the real `python -m asyncjobs worker`; "harness": benchmarks.worker_proc.
    runner = "cli"

    @property
    def notes(self) -> str:  # type: ignore[override]
        how = "`python -m asyncjobs worker`" if self.runner == "cli" else "benchmarks.worker_proc"
        return f"{how}, defaults (grace 0, poll 5 s, claim batch 50), log level WARNING"

    def version(self) -> str:
        try:
            return importlib.metadata.version("asyncjobs")
        except importlib.metadata.PackageNotFoundError:
            return "source"

    def _tasks(self, dsn: str) -> Any:
        from benchmarks.systems import asyncjobs_tasks

        asyncjobs_tasks.app.dsn = dsn
        asyncjobs_tasks.app.schema = SCHEMA
        return asyncjobs_tasks

    async def reset(self, dsn: str) -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')
        finally:
            await conn.close()
        await self._tasks(dsn).app.migrate()

    @contextlib.asynccontextmanager
    async def client(self, dsn: str) -> AsyncIterator[BenchClient]:
        tasks = self._tasks(dsn)
        async with tasks.app.client() as client:
            yield AsyncjobsClient(client, tasks)

    def worker_command(
        self,
        dsn: str,
        concurrency: int,
        *,
        hand_off_after: float | None = None,
        observe: bool = False,
    ) -> tuple[list[str], dict[str, str]]:
        env = {"ASYNCJOBS_DSN": dsn, "ASYNCJOBS_SCHEMA": SCHEMA}
        if observe:
            env["BENCH_OBSERVE"] = "1"
        if self.runner == "harness":
            argv, _ = super().worker_command(dsn, concurrency)
            if hand_off_after is not None:
                env["BENCH_HAND_OFF_AFTER"] = str(hand_off_after)
            return argv, env
        # Nothing but the default hand-off unless a scenario asks for another one.
        extra = [] if hand_off_after is None else ["--hand-off-after", str(hand_off_after)]
        from benchmarks.systems.asyncjobs_tasks import PARTS

        if observe and "prometheus" in PARTS:
            # Served, as a user would; nobody scrapes it during the drain.
            extra += ["--metrics-port", "0", "--metrics-host", "127.0.0.1"]
        return (
            [
                python(),
                "-m",
                "asyncjobs",
                "--log-level",
                "WARNING",
                "worker",
                "benchmarks.systems.asyncjobs_tasks:app",
                "--concurrency",
                str(concurrency),
                *extra,
            ],
            env,
        )

    def _listening(self, query: str) -> bool:
        # The listener LISTENs on each of the worker's channels in turn (enqueue first), then
        # the fetcher starts: any of them will do, with wait_ready's settling pause after.
        # (Waiting for one named channel broke when the schedules channel came last.)
        return "LISTEN" in query.upper()

    async def remaining(self, conn: asyncpg.Connection) -> int:
        return int(
            await conn.fetchval(
                f"SELECT count(*) FROM {SCHEMA}.jobs "
                "WHERE state IN ('queued', 'scheduled', 'processing')"
            )
        )

    async def drain_window(self, conn: asyncpg.Connection) -> tuple[float, float, int]:
        row = await conn.fetchrow(
            f"SELECT extract(epoch FROM min(started_at))::float8 AS first, "
            f"extract(epoch FROM max(finished_at))::float8 AS last, "
            f"count(*) FILTER (WHERE state = 'succeeded') AS done "
            f"FROM {SCHEMA}.jobs WHERE task = 'bench.noop'"
        )
        return row["first"], row["last"], int(row["done"])

    async def finished_times(self, conn: asyncpg.Connection) -> list[float]:
        rows = await conn.fetch(
            f"SELECT extract(epoch FROM finished_at)::float8 AS t FROM {SCHEMA}.jobs "
            "WHERE task = 'bench.tick' AND state = 'succeeded'"
        )
        return [r["t"] for r in rows]

    async def handed_off(self, conn: asyncpg.Connection) -> int | None:
        return int(
            await conn.fetchval(
                f"SELECT count(*) FROM {SCHEMA}.jobs "
                "WHERE state = 'processing' AND lease IS NOT NULL"
            )
        )

    async def claim_probe(self, conn: asyncpg.Connection) -> float | None:
        from asyncjobs.db.sql import Queries

        claim = Queries.for_schema(SCHEMA).claim
        tx = conn.transaction()
        await tx.start()
        try:
            started = time.perf_counter()
            await conn.fetch(claim, ["default"], 1)
            return time.perf_counter() - started
        finally:
            await tx.rollback()
