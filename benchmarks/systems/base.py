"""The small interface every benchmarked system implements."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, ClassVar

import asyncpg

from benchmarks.common import WorkerProcess, python

# The same three jobs exist in every system:
#   noop(i)                 does nothing                     (enqueue, drain)
#   tick(i)                 counts itself (marks.tick)       (held-transaction scenario)
#   mark(key)               emit("start", key)               (pickup latency, readiness)
#   sleeper(key, seconds)   emit("start"), sleep, and emit("cancelled") on CancelledError


class BenchClient:
    """Enqueues and cancels the benchmark's jobs, from the benchmark process."""

    async def enqueue_noop(self, i: int) -> Any:
        raise NotImplementedError

    async def enqueue_noop_batch(self, numbers: Sequence[int]) -> list[Any]:
        raise NotImplementedError

    async def enqueue_tick_batch(self, numbers: Sequence[int]) -> list[Any]:
        raise NotImplementedError

    async def enqueue_mark(self, key: str) -> Any:
        raise NotImplementedError

    async def enqueue_sleeper(self, key: str, seconds: float) -> Any:
        raise NotImplementedError

    async def enqueue_sleepers(self, keys: Sequence[str], seconds: float) -> list[Any]:
        raise NotImplementedError

    async def cancel(self, job_id: Any) -> None:
        raise NotImplementedError


class System:
    """One job runner under test. Each gets its own database `<bench db>_<name>`."""

    name = ""
    # Scenario keys this system can't do, and why (printed as "n/a: why").
    unsupported: ClassVar[dict[str, str]] = {}
    # Tables whose dead tuples the held-transaction scenario reports (`schema.table`).
    tables: Sequence[str] = ()
    # How the worker is configured, for the report.
    notes: str = ""

    def version(self) -> str:
        raise NotImplementedError

    async def reset(self, dsn: str) -> None:
        """Drop and recreate every object of this system in its database."""
        raise NotImplementedError

    def client(self, dsn: str) -> contextlib.AbstractAsyncContextManager[BenchClient]:
        raise NotImplementedError

    def worker_command(
        self,
        dsn: str,
        concurrency: int,
        *,
        hand_off_after: float | None = None,
        observe: bool = False,
    ) -> tuple[list[str], dict[str, str]]:
        """argv and extra environment of one worker process. `hand_off_after` (asyncjobs'
        worker setting) and `observe` (its tracing and metrics) are ignored by systems that
        have no such thing."""
        return (
            [python(), "-m", "benchmarks.worker_proc", self.name, dsn, str(concurrency)],
            {},
        )

    async def wait_ready(
        self, worker: WorkerProcess, conn: asyncpg.Connection, timeout: float
    ) -> bool:
        """Wait until the worker listens for new jobs. Default: one of its sessions has run
        LISTEN (and is idle on it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and worker.alive:
            for row in await worker.sessions(conn):
                if (row["query"] or "").lstrip().upper().startswith("LISTEN") and self._listening(
                    row["query"]
                ):
                    await asyncio.sleep(0.2)
                    return True
            await asyncio.sleep(0.05)
        return False

    def _listening(self, query: str) -> bool:
        return True

    async def remaining(self, conn: asyncpg.Connection) -> int:
        """How many jobs are not finished yet."""
        raise NotImplementedError

    async def drain_window(self, conn: asyncpg.Connection) -> tuple[float, float, int]:
        """(first job start, last job finish) of the noop jobs as epoch seconds from the
        database's own timestamps, and how many finished successfully."""
        raise NotImplementedError

    async def finished_times(self, conn: asyncpg.Connection) -> list[float]:
        """Epoch finish time of every successfully finished tick job (held scenario)."""
        raise NotImplementedError

    async def handed_off(self, conn: asyncpg.Connection) -> int | None:
        """How many running jobs have left their claim for their worker's lease (asyncjobs'
        `jobs.lease`); None for systems without hand-off."""
        return None

    async def claim_probe(self, conn: asyncpg.Connection) -> float | None:
        """Seconds one claim statement takes right now (rolled back); None if not meaningful."""
        return None


@contextlib.asynccontextmanager
async def connect(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(dsn)
    try:
        yield conn
    finally:
        await conn.close()
