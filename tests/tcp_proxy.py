"""A TCP proxy to PostgreSQL that a test can partition: bytes stop flowing both ways while
every socket stays open (so neither side's kernel sees anything wrong, as with a cut
network path), and later the server's side can be closed, as the server does when its
keepalives give up."""

from __future__ import annotations

import asyncio
import urllib.parse


class PartitionProxy:
    """`async with PartitionProxy(dsn) as proxy:` then give `proxy.dsn` to a worker."""

    def __init__(self, upstream: str) -> None:
        parts = urllib.parse.urlsplit(upstream)
        query = urllib.parse.parse_qs(parts.query)
        self._host = query.get("host", [parts.hostname or "127.0.0.1"])[0]
        self._port = int(query.get("port", [parts.port or 5432])[0])
        self._user = parts.username or "postgres"
        self._database = parts.path.lstrip("/") or "postgres"
        self._server: asyncio.Server | None = None
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._upstreams: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def dsn(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"postgresql://{self._user}@127.0.0.1:{port}/{self._database}"

    async def __aenter__(self) -> PartitionProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for writer in self._upstreams:
            writer.transport.abort()

    def partition(self) -> None:
        """Stop every byte, both ways, on every connection; new ones hang too."""
        self._flowing.clear()

    def close_server_side(self) -> None:
        """Close the server's end of every connection (it sees EOF and ends the sessions)."""
        for writer in self._upstreams:
            writer.transport.abort()
        self._upstreams.clear()

    async def _open_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._host.startswith("/"):
            return await asyncio.open_unix_connection(f"{self._host}/.s.PGSQL.{self._port}")
        return await asyncio.open_connection(self._host, self._port)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            await self._flowing.wait()
            writer.write(data)
            await writer.drain()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """What the server sends, to the client (a subclass may lose it)."""
        await self._pump(reader, writer)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._flowing.wait()
        up_reader, up_writer = await self._open_upstream()
        self._upstreams.append(up_writer)
        pumps = [
            asyncio.ensure_future(self._pump(reader, up_writer)),
            asyncio.ensure_future(self._answer(up_reader, writer)),
        ]
        self._tasks.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            pass
        finally:
            for task in pumps:
                task.cancel()
                self._tasks.discard(task)
            writer.transport.abort()
            up_writer.transport.abort()
