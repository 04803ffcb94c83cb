"""Taking over a job whose last worker may still be running it: a handshake, not a wait.

A claimed row comes back when its claim session ends. Usually its worker is gone; but the
session alone may have been lost (a terminated backend, a broken connection) while the
worker lives on and, until it notices, still runs the job. Likewise a job requeued while it
runs is claimable at once, while its old attempt stops. A job started in either case
(`taken_from`: its last worker's key is still held) runs only once that worker says it has
stopped the old attempt, or is gone:

- this worker asks it (statement `ask_release`, a NOTIFY naming the job, the queue row the
  new attempt started from and its number), which also checks the key: a worker that is
  gone can't answer and needn't;
- the old worker stops the attempt if it still runs it (the ask alone tells it its claim
  is lost), and once its code has returned (a sync job's thread too) answers `released`;
- then the attempt clears jobs.stopping_on (statement `let_go`) and its code runs; until
  then a requeue or a shutdown of this attempt keeps the old worker named there, so the
  next attempt waits for it too;
- any worker's death is followed by a rescue, whose NOTIFY ('workers') has every waiter
  check its worker's key again; so does a reconnect of the listener, which may have
  missed an answer.

Nothing is polled and nothing waits a fixed time: a blocked event loop or a stubborn
thread on the old worker delays the takeover for exactly as long as it runs.
"""

from __future__ import annotations

import logging
import uuid

import anyio

from ..db.connections import DATABASE_ERRORS
from ..db.pool import Pool
from ..db.sql import Queries

logger = logging.getLogger("asyncjobs.worker")


class _Wait:
    __slots__ = ("changed", "released")

    def __init__(self) -> None:
        self.released = False
        self.changed = anyio.Event()


class Takeovers:
    """The jobs of this worker waiting for their last worker to let go."""

    def __init__(self, pool: Pool, sql: Queries) -> None:
        self._pool = pool
        self._sql = sql
        self._waits: dict[tuple[int, int], _Wait] = {}

    async def wait(self, job_id: int, entry: int, attempt: int, previous: uuid.UUID) -> bool:
        """Return once the worker `previous` runs no other attempt of the job than this one
        (queue row `entry`, attempt `attempt`), or is gone: True if this attempt is still
        the job's current one (statement `let_go`), False if it was decided elsewhere."""
        wait = self._waits[(job_id, entry)] = _Wait()
        asked = f"ask {job_id} {entry} {attempt} {previous}"
        delay = 0.05
        try:
            while not wait.released:
                wait.changed = anyio.Event()
                try:
                    alive = await self._pool.fetchval(self._sql.ask_release, previous, asked)
                except DATABASE_ERRORS as exc:
                    logger.warning("cannot ask worker %s about job %s: %s", previous, job_id, exc)
                    with anyio.move_on_after(delay):
                        await wait.changed.wait()
                    delay = min(delay * 2, 2.0)
                    continue
                if not alive:
                    break
                logger.info("job %s: waiting for worker %s to stop its attempt", job_id, previous)
                await wait.changed.wait()
        finally:
            del self._waits[(job_id, entry)]
        while True:
            try:
                current = await self._pool.fetchval(self._sql.let_go, job_id, entry, attempt)
            except DATABASE_ERRORS as exc:
                logger.warning("cannot record that job %s may run: %s", job_id, exc)
                await anyio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            return current is not None

    def released(self, job_id: int, entry: int) -> None:
        """The old worker says it stopped the job's attempt of that row."""
        wait = self._waits.get((job_id, entry))
        if wait is not None:
            wait.released = True
            wait.changed.set()

    def recheck(self) -> None:
        """A worker is gone, or an answer may have been missed: ask again."""
        for wait in self._waits.values():
            wait.changed.set()
