"""Real PostgreSQL for every test: $ASYNCJOBS_TEST_DSN, else Docker through testcontainers
when $ASYNCJOBS_TEST_DOCKER=1, else an embedded PostgreSQL 18 in a temp dir (~2 s).

Each test gets its own schema (and so its own NOTIFY channels)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest

import asyncjobs
from tests.helpers import Output

ROOT = Path(__file__).resolve().parent.parent

# An illegal transition of a claim (worker/claims.py) raises in tests, in this process and
# in the worker processes they start, rather than being logged.
os.environ.setdefault("ASYNCJOBS_STRICT_STATES", "1")


@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    """A DSN of a real PostgreSQL server for the whole session."""
    dsn = os.environ.get("ASYNCJOBS_TEST_DSN")
    if dsn:
        yield dsn
        return
    if os.environ.get("ASYNCJOBS_TEST_DOCKER") == "1":
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:18", driver=None) as container:
            yield container.get_connection_url()
        return
    from asyncjobs.db.embedded import EmbeddedServer

    with tempfile.TemporaryDirectory(prefix="asyncjobs-test-") as tmp:
        os.chmod(tmp, 0o755)
        server = EmbeddedServer(Path(tmp) / "pg")
        server.start()
        try:
            yield server.dsn
        finally:
            server.stop()


async def fresh_schema(pg_dsn: str) -> AsyncIterator[str]:
    """A fresh schema name, dropped afterwards: the body of schema-name fixtures."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture
async def schema(pg_dsn: str) -> AsyncIterator[str]:
    """A fresh schema name for one test, dropped afterwards."""
    async for name in fresh_schema(pg_dsn):
        yield name


@pytest.fixture
async def other_schema(pg_dsn: str) -> AsyncIterator[str]:
    """A second fresh schema name, for tests that compare two."""
    async for name in fresh_schema(pg_dsn):
        yield name


@pytest.fixture
def app(pg_dsn: str, schema: str) -> asyncjobs.App:
    """An App on the test's own schema; register the test's tasks on it."""
    return asyncjobs.App(pg_dsn, schema=schema)


@pytest.fixture
async def client(app: asyncjobs.App) -> AsyncIterator[asyncjobs.Client]:
    """An open client of `app` (which also migrates its schema)."""
    async with app.client() as client:
        yield client


@pytest.fixture
async def admin(pg_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain connection for looking at tables and terminating backends."""
    conn = await asyncpg.connect(pg_dsn)
    yield conn
    await conn.close()


@pytest.fixture
def spawn_worker(pg_dsn: str, schema: str) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start `asyncjobs [before...] worker tests.worker_app:app ...` (or another `app`) as a
    real process."""
    procs: list[subprocess.Popen[str]] = []

    def spawn(
        *args: str,
        env: dict[str, str] | None = None,
        app: str = "tests.worker_app:app",
        before: tuple[str, ...] = (),
    ) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "asyncjobs", *before, "worker", app, *args],
            cwd=ROOT,
            env={
                **os.environ,
                "ASYNCJOBS_DSN": pg_dsn,
                "ASYNCJOBS_SCHEMA": schema,
                "PYTHONPATH": str(ROOT),
                # A SIGKILLed worker keeps what it said, for the failure report below.
                "PYTHONUNBUFFERED": "1",
                **(env or {}),
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        # Read as it comes (a full pipe would block the worker), with the pipe's methods.
        assert proc.stdout is not None
        proc.stdout = Output(proc.stdout)  # type: ignore[assignment]
        procs.append(proc)
        return proc

    yield spawn
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stdout and not proc.stdout.closed:
            # Shown by pytest only when the test failed: what each worker said.
            output = proc.stdout.read()
            proc.stdout.close()
            print(f"--- worker {proc.pid} (exit {proc.returncode}):\n{output[-4000:]}")


@pytest.fixture
def env(pg_dsn: str, schema: str) -> dict[str, str]:
    """The environment of a CLI process working on the test's schema."""
    return {
        **os.environ,
        "ASYNCJOBS_DSN": pg_dsn,
        "ASYNCJOBS_SCHEMA": schema,
        "PYTHONPATH": str(ROOT),
    }
