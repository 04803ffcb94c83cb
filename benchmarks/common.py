"""Shared pieces: DSNs and databases, worker subprocesses, statistics."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import sys
import time
import urllib.parse
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import psutil

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"


# -- DSNs and databases -----------------------------------------------------------------


def dsn_database(dsn: str) -> str:
    """The database name a postgresql:// DSN points at."""
    path = urllib.parse.urlsplit(dsn).path.lstrip("/")
    return urllib.parse.unquote(path) or "postgres"


def with_database(dsn: str, database: str) -> str:
    """The same DSN pointing at another database."""
    parts = urllib.parse.urlsplit(dsn)
    return urllib.parse.urlunsplit(parts._replace(path="/" + urllib.parse.quote(database)))


def check_local(dsn: str) -> None:
    """Refuse to benchmark anything but a local server: we kill backends and drop schemas."""
    host = urllib.parse.urlsplit(dsn).hostname or ""
    if host not in ("127.0.0.1", "localhost", "::1", ""):
        raise SystemExit(f"refusing to run against {host!r}: benchmarks only run on 127.0.0.1")


async def ensure_database(dsn: str, name: str) -> None:
    """Create database `name` unless it exists, on the server of `dsn`. Connects to its
    maintenance database, so that the database `dsn` names need not exist either."""
    parts = urllib.parse.urlsplit(dsn)
    conn = await asyncpg.connect(urllib.parse.urlunsplit(parts._replace(path="/postgres")))
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def terminate_backends(dsn: str) -> int:
    """End every other session on the DSN's database (leftovers of a previous scenario)."""
    conn = await asyncpg.connect(dsn)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND backend_type = 'client backend'"
            )
        )
    finally:
        await conn.close()


async def dead_tuples(conn: asyncpg.Connection, tables: Sequence[str]) -> dict[str, dict[str, int]]:
    """n_live_tup / n_dead_tup of some tables (`schema.table`) from pg_stat_user_tables."""
    out: dict[str, dict[str, int]] = {}
    for name in tables:
        schema, _, table = name.rpartition(".")
        row = await conn.fetchrow(
            "SELECT n_live_tup, n_dead_tup FROM pg_stat_user_tables "
            "WHERE schemaname = $1 AND relname = $2",
            schema or "public",
            table,
        )
        if row is not None:
            out[name] = {"live": int(row["n_live_tup"]), "dead": int(row["n_dead_tup"])}
    return out


# -- worker subprocesses --------------------------------------------------------------

_LIVE: set[WorkerProcess] = set()


class WorkerProcess:
    """A worker in its own process; its jobs' marks are read from its stdout.

    stderr goes to a log file. Started in its own session so a Ctrl-C of the benchmark
    reaches it only through `kill_all()`.
    """

    def __init__(self, argv: Sequence[str], env: dict[str, str], log_path: Path, label: str):
        self.argv = list(argv)
        self.env = env
        self.log_path = log_path
        self.label = label
        self.proc: asyncio.subprocess.Process | None = None
        self.pid = 0
        self.marks: dict[tuple[str, str], list[float]] = {}
        self.ready_at: float | None = None
        self.ticks = 0  # jobs counted by benchmarks.marks.tick()
        self._changed = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self.started_at = 0.0

    async def start(self) -> WorkerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115, ASYNC230 - a small local file
        log.write(f"--- {self.label}: {' '.join(self.argv)}\n".encode())
        log.flush()
        self.started_at = time.time()
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            env=self.env,
            cwd=str(ROOT),
            start_new_session=True,
        )
        log.close()
        self.pid = self.proc.pid
        _LIVE.add(self)
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for raw in self.proc.stdout:
            parts = raw.decode(errors="replace").split()
            if len(parts) >= 4 and parts[0] == "M":
                self.marks.setdefault((parts[1], parts[2]), []).append(float(parts[3]))
            elif len(parts) >= 2 and parts[0] == "C":
                self.ticks = int(parts[1])
            elif parts and parts[0] == "READY":
                self.ready_at = float(parts[2]) if len(parts) > 2 else time.time()
            else:
                continue
            self._changed.set()
            self._changed = asyncio.Event()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def mark(self, kind: str, key: str) -> float | None:
        """The first time job `key` reported `kind`, if it did."""
        times = self.marks.get((kind, key))
        return times[0] if times else None

    async def wait_for(self, predicate: Any, timeout: float) -> bool:
        """Wait until `predicate()` is true (re-checked on every line read)."""
        deadline = time.monotonic() + timeout
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0 or (not self.alive and self._reader is not None and self._reader.done()):
                return bool(predicate())
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), min(left, 0.5))
        return True

    async def wait_mark(self, kind: str, key: str, timeout: float) -> float | None:
        await self.wait_for(lambda: (kind, key) in self.marks, timeout)
        return self.mark(kind, key)

    async def wait_marks(self, kind: str, keys: Iterable[str], timeout: float) -> dict[str, float]:
        wanted = list(keys)
        await self.wait_for(lambda: all((kind, k) in self.marks for k in wanted), timeout)
        return {k: t for k in wanted if (t := self.mark(kind, k)) is not None}

    async def wait_ready_line(self, timeout: float) -> bool:
        return await self.wait_for(lambda: self.ready_at is not None, timeout)

    def send(self, sig: int) -> None:
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    async def wait_exit(self, timeout: float) -> bool:
        """Wait for the process to exit; True if it did within `timeout`."""
        assert self.proc is not None
        try:
            await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after `timeout`; always reaps the process."""
        if self.proc is None:
            return
        if self.alive:
            self.send(signal.SIGTERM)
            if not await self.wait_exit(timeout):
                self.send(signal.SIGKILL)
                await self.proc.wait()
        if self._reader is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._reader, 2)
        _LIVE.discard(self)

    async def kill(self) -> None:
        if self.proc is None:
            return
        self.send(signal.SIGKILL)
        await self.proc.wait()
        _LIVE.discard(self)

    def rss(self) -> int:
        return int(psutil.Process(self.pid).memory_info().rss)

    def local_ports(self) -> set[int]:
        """Local TCP ports of the process's sockets (to find its database sessions)."""
        try:
            conns = psutil.Process(self.pid).net_connections(kind="tcp")
        except (psutil.Error, OSError):
            return set()
        return {c.laddr.port for c in conns if c.laddr}

    async def sessions(self, conn: asyncpg.Connection) -> list[asyncpg.Record]:
        """This process's sessions in pg_stat_activity (matched by client port)."""
        ports = sorted(self.local_ports())
        if not ports:
            return []
        return await conn.fetch(
            "SELECT pid, state, query, backend_xmin, xact_start FROM pg_stat_activity "
            "WHERE client_port = ANY($1::int[]) AND client_addr IS NOT NULL",
            ports,
        )


def kill_all() -> None:
    """SIGKILL every worker process still running (on the way out)."""
    for worker in list(_LIVE):
        if worker.alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signal.SIGKILL)
    _LIVE.clear()


def python() -> str:
    return sys.executable


# -- statistics -----------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear between closest ranks; inf-safe."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    if ordered[hi] == math.inf:
        return math.inf if pos > lo or ordered[lo] == math.inf else ordered[lo]
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def latency_summary(ms: Sequence[float], missing: int = 0) -> dict[str, float]:
    """p50/p90/p99/max of latencies in ms; missing ones count as infinite."""
    values = list(ms) + [math.inf] * missing
    return {
        "p50_ms": percentile(values, 50),
        "p90_ms": percentile(values, 90),
        "p99_ms": percentile(values, 99),
        "max_ms": max(values) if values else math.nan,
        "n": len(ms),
        "missing": missing,
    }
