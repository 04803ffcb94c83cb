"""Queue depth and the oldest waiting job's age, read from the database when metrics are
scraped (statement `queue_stats`), from the event loop or from an exporter's thread."""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Protocol

import anyio
import anyio.from_thread
import anyio.lowlevel

from ..db.connections import DATABASE_ERRORS
from ..db.pool import Pool, PoolClosed
from ..db.sql import Queries

logger = logging.getLogger("asyncjobs.metrics")

# A read this recent serves a scrape as it is (the ASGI route reads just before it asks).
FRESH = 1.0
# The longest an exporter's thread waits for a read.
READ_TIMEOUT = 5.0


@dataclasses.dataclass(frozen=True, slots=True)
class QueueDepth:
    """Jobs of one queue in one state ('queued': due and waiting, 'scheduled': due later,
    'processing', 'awaiting': waiting for parent jobs), and for 'queued', seconds since
    the oldest of them was due."""

    queue: str
    state: str
    jobs: int
    oldest: float | None


class Source(Protocol):
    """What the stats are read through: a running Worker, or an open Client."""

    @property
    def pool(self) -> Pool | None: ...

    sql: Queries


class QueueStats:
    """Reads `queue_stats` through the pool of a worker or client (`attach`)."""

    def __init__(self) -> None:
        self._source: Source | None = None
        self._token: anyio.lowlevel.EventLoopToken | None = None
        self._last: list[QueueDepth] = []
        self._read_at = -FRESH

    @property
    def source(self) -> Source | None:
        """What the stats are read through, if anything."""
        return self._source

    def attach(self, source: Source) -> None:
        """Read through `source` from now on; called in its event loop."""
        self._source = source
        self._token = anyio.lowlevel.current_token()

    def detach(self, source: Source) -> None:
        """Stop reading through `source` (a worker that stops)."""
        if self._source is source:
            self._source = None
            self._token = None

    async def read(self) -> list[QueueDepth]:
        """Read now; [] without a source or when the database can't answer (logged)."""
        source = self._source
        pool = source.pool if source is not None else None
        if source is None or pool is None:
            return []
        try:
            with anyio.fail_after(READ_TIMEOUT):
                rows = await pool.fetch(source.sql.queue_stats)
        except DATABASE_ERRORS as exc:
            logger.warning("cannot read queue depth for metrics: %s", exc)
            return []
        except PoolClosed:
            return []
        self._last = [QueueDepth(r["queue"], r["state"], r["jobs"], r["oldest"]) for r in rows]
        self._read_at = time.monotonic()
        return self._last

    def current(self) -> list[QueueDepth]:
        """For a scrape that runs outside the event loop (an exporter's thread, which
        waits for the loop to read), or just after `read()` (the last read)."""
        if time.monotonic() - self._read_at < FRESH or self._token is None:
            return self._last
        try:
            return anyio.from_thread.run(self.read, token=self._token)
        except RuntimeError:
            # Called in the event loop itself (it can't wait for itself), or the loop is
            # gone: the last read.
            return self._last
