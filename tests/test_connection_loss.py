"""An enqueue when the connection breaks: a real server restart (an embedded PostgreSQL of
the test's own) and a real cut after the server committed (a TCP proxy the test runs).
The caller gets asyncjobs' own error saying whether the job may be stored, a unique key
makes the retry safe, and the client works again once the server is back."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest

import asyncjobs
from asyncjobs.db.embedded import EmbeddedServer
from tests.tcp_proxy import PartitionProxy


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Under /tmp and 0755: as root the server runs as nobody, and socket paths must be short.
    path = Path(tempfile.mkdtemp(prefix="ajlost-", dir="/tmp"))
    path.chmod(0o755)
    yield path / "pg"
    shutil.rmtree(path, ignore_errors=True)


def _app(dsn: str, schema: str) -> tuple[asyncjobs.App, asyncjobs.Task[[int], int]]:
    app = asyncjobs.App(dsn, schema=schema)

    @app.task(name="charge")
    def charge(order: int) -> int:
        return order

    return app, charge


async def _wait_for_lock_wait(conn: asyncpg.Connection) -> None:
    with anyio.fail_after(10):
        while not await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        ):
            await anyio.sleep(0.01)


async def test_an_enqueue_cut_by_a_server_restart(data_dir: Path) -> None:
    server = EmbeddedServer(data_dir)
    await server.astart()
    try:
        app, charge = _app(server.dsn, "lost")
        async with app.client() as client:
            first = await client.enqueue(charge, 1)
            # An enqueue in flight when the server goes down: it waits on a lock the test holds.
            blocker = await asyncpg.connect(server.dsn)
            await blocker.execute('BEGIN; LOCK TABLE "lost".jobs IN ACCESS EXCLUSIVE MODE')
            raised: list[BaseException] = []

            async def enqueue_in_flight() -> None:
                try:
                    await client.enqueue(charge.options(unique_key="order-2"), 2)
                except Exception as exc:
                    raised.append(exc)

            async with anyio.create_task_group() as tg:
                tg.start_soon(enqueue_in_flight)
                await _wait_for_lock_wait(blocker)
                await server.astop()
            blocker.terminate()

            (lost,) = raised
            assert isinstance(lost, asyncjobs.ConnectionLost), repr(lost)
            assert lost.maybe_stored
            assert "lost while enqueueing a job of task 'charge'" in str(lost)
            assert "unique_key" in str(lost)

            # While the server is down: nothing can be stored, and the error says so.
            with pytest.raises(asyncjobs.ConnectionFailed) as down:
                await client.enqueue(charge, 3)
            assert not down.value.maybe_stored
            with pytest.raises(asyncjobs.ConnectionFailed):
                await client.get(first)

            await server.astart()
            # The client's pool recovers at once: the next calls work.
            assert (await client.get(first)).args == [1]
            retried = await client.enqueue(charge.options(unique_key="order-2"), 2)
            assert await client.enqueue(charge.options(unique_key="order-2"), 2) == retried
            assert sorted(j.args[0] for j in await client.list_jobs()) == [1, 2]
    finally:
        await server.astop()


class _Proxy(PartitionProxy):
    """A TCP proxy to PostgreSQL that can lose a statement's answer: with `lose_answer`
    set, what the server sends is dropped until its ReadyForQuery (the statement has then
    committed), and the client's connection is cut."""

    READY = b"Z\x00\x00\x00\x05"

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream)
        self.lose_answer = False
        self.cut = anyio.Event()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        dropped = b""
        while data := await reader.read(65536):
            if not self.lose_answer:
                writer.write(data)
                await writer.drain()
                continue
            dropped += data
            if self.READY in dropped:
                writer.transport.abort()
                self.cut.set()
                return


@pytest.fixture
async def proxy(pg_dsn: str) -> AsyncIterator[_Proxy]:
    async with _Proxy(pg_dsn) as running:
        yield running


async def test_an_enqueue_whose_answer_is_lost_was_stored_and_a_keyed_retry_is_safe(
    proxy: _Proxy, pg_dsn: str, schema: str, admin: asyncpg.Connection
) -> None:
    app, charge = _app(proxy.dsn, schema)
    async with app.client() as client:
        await client.enqueue(charge.options(unique_key="order-1"), 1)
        proxy.lose_answer = True
        with pytest.raises(asyncjobs.ConnectionLost) as lost:
            await client.enqueue(charge.options(unique_key="order-42"), 42)
        assert proxy.cut.is_set()
        assert lost.value.maybe_stored
        proxy.lose_answer = False
        # It was stored: the answer was lost, not the write. A retry with its unique key
        # returns that job instead of making a second one.
        stored = await admin.fetchval(
            f"SELECT id FROM \"{schema}\".jobs WHERE unique_key = 'order-42'"
        )
        assert stored is not None
        assert await client.enqueue(charge.options(unique_key="order-42"), 42) == stored
        assert await admin.fetchval(f'SELECT count(*) FROM "{schema}".jobs') == 2
        # And the pool carries on.
        assert [j.args for j in await client.list_jobs()] == [[42], [1]]


async def _listening(client: asyncjobs.Client, job_id: int) -> None:
    """A short wait: its listening connection is open, and the job read once."""
    with pytest.raises(asyncjobs.WaitTimeout):
        await client.wait(job_id, timeout=0.2)


# (warm-up, the call cut mid-statement, whether it writes). The warm-up runs the same
# statement first, uncut, on the connection the call then takes from the pool: a statement
# new to a connection is prepared first, and the proxy would lose that answer instead.
CUT_CALLS: dict[str, tuple[Any, Any, bool]] = {
    "workers": (lambda c, j: c.workers(), lambda c, j: c.workers(), False),
    "wait": (_listening, lambda c, j: c.wait(j, timeout=10), False),
    "schedules.get": (
        lambda c, j: c.schedules.get("kept"),
        lambda c, j: c.schedules.get("kept"),
        False,
    ),
    "schedules.list": (lambda c, j: c.schedules.list(), lambda c, j: c.schedules.list(), False),
    "schedules.add": (
        lambda c, j: c.schedules.add("one", "charge", "* * * * *", args=[1]),
        lambda c, j: c.schedules.add("two", "charge", "* * * * *", args=[2]),
        True,
    ),
    "schedules.update": (
        lambda c, j: c.schedules.update("kept", cron="*/2 * * * *"),
        lambda c, j: c.schedules.update("kept", cron="*/3 * * * *"),
        True,
    ),
    "schedules.pause": (
        lambda c, j: c.schedules.pause("kept"),
        lambda c, j: c.schedules.pause("kept"),
        True,
    ),
    "schedules.resume": (
        lambda c, j: c.schedules.pause("kept"),
        lambda c, j: c.schedules.resume("kept"),
        True,
    ),
    "schedules.trigger": (
        lambda c, j: c.schedules.trigger("kept"),
        lambda c, j: c.schedules.trigger("kept"),
        True,
    ),
    "schedules.remove": (
        lambda c, j: c.schedules.add("one", "charge", "* * * * *", args=[1]),
        lambda c, j: c.schedules.remove("kept"),
        True,
    ),
}


@pytest.mark.parametrize("name", CUT_CALLS)
async def test_every_client_call_cut_mid_statement_raises_connection_lost(
    proxy: _Proxy, schema: str, name: str
) -> None:
    """Not only enqueue: reads, wait and the schedules' calls raised raw asyncpg errors."""
    warm, cut, writes = CUT_CALLS[name]
    app, charge = _app(proxy.dsn, schema)
    async with app.client() as client:
        job_id = await client.enqueue(charge, 1)
        await client.schedules.add("kept", charge, "* * * * *", args=[1])
        await warm(client, job_id)
        proxy.lose_answer = True
        with pytest.raises(asyncjobs.ConnectionLost) as lost:
            await cut(client, job_id)
        assert proxy.cut.is_set()
        assert lost.value.maybe_stored is writes
        assert "the connection to PostgreSQL was lost while" in str(lost.value)
        proxy.lose_answer = False
        assert (await client.get(job_id)).args == [1]  # and the client carries on
