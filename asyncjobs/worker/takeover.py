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

The same answer says who reports the old attempt (lost.py). A worker that dies ends its
sessions one by one: a peer that claims its job between the end of its claim session and
that of its lease session finds its key held, and can't tell it from a live worker that
lost its claim. So the report waits for the answer: `released`, and the old worker lives
and reported its attempt itself (before answering); gone, and this worker reports it. A
job failed because that was its last attempt asks too, with no attempt of its own to
wait (`report_if_gone`), and so does a start whose job's last attempt was another worker's
than the one it waits for (a chain: that worker took the job over and lost it in turn). A
worker that stops with such a question open waits a moment for its answer (`settle`).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable

import anyio
import anyio.abc

from ..db.connections import DATABASE_ERRORS
from ..db.pool import Pool
from ..db.sql import Queries
from ..hooks import JobRun
from ..retry import RetryDelay

logger = logging.getLogger("asyncjobs.worker")


class _Wait:
    __slots__ = ("changed", "previous", "released")

    def __init__(self, previous: uuid.UUID) -> None:
        self.previous = str(previous)
        self.released = False
        self.changed = anyio.Event()


class Takeovers:
    """The jobs of this worker waiting for their last worker to let go, and the attempts
    that worker ran, to report as lost if it turns out gone."""

    def __init__(self, pool: Pool, sql: Queries, on_lost: Callable[[list[JobRun]], None]) -> None:
        self._pool = pool
        self._sql = sql
        self._on_lost = on_lost
        # By job and queue row; a set, since a report's wait may share its job's row with
        # an attempt's (report_if_gone).
        self._waits: dict[tuple[int, int], set[_Wait]] = {}
        self._reports: anyio.abc.TaskGroup | None = None
        # The lost attempts whose report waits for an answer (report_if_gone), by id.
        self._unanswered: dict[int, JobRun] = {}
        self._answered = anyio.Event()

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Until cancelled: hold the waits of `report_if_gone`."""
        try:
            async with anyio.create_task_group() as self._reports:
                task_status.started()
                await anyio.sleep_forever()
        finally:
            self._reports = None

    async def wait(
        self,
        job_id: int,
        entry: int,
        attempt: int,
        previous: uuid.UUID,
        lost: JobRun | None = None,
    ) -> bool:
        """Return once the worker `previous` runs no other attempt of the job than this one
        (queue row `entry`, attempt `attempt`), or is gone: True if this attempt is still
        the job's current one (statement `let_go`), False if it was decided elsewhere.

        `lost`: the attempt `previous` ran, which the start found neither gone nor surely
        alive: reported if `previous` turns out gone. If this attempt is stopped first,
        `report_if_gone` takes the question over."""
        try:
            released = await self._stopped(job_id, entry, attempt, previous)
        except anyio.get_cancelled_exc_class():
            if lost is not None:
                self.report_if_gone(lost, entry, attempt)
            raise
        if lost is not None and not released:
            self._report(lost)
        return await self._let_go(job_id, entry, attempt)

    def report_if_gone(self, lost: JobRun, entry: int, attempt: int) -> None:
        """Report `lost` once its worker is found gone, and not if it says it stopped the
        attempt (then it reported it itself); `entry`, `attempt`: the job's queue row and
        an attempt number later than `lost`'s, for the ask. In the background."""
        if self._reports is None:
            logger.warning(
                "job %s: this worker stops, so attempt %s is reported only if worker %s lives",
                lost.job_id,
                lost.attempt,
                lost.worker_id,
            )
            return
        self._reports.start_soon(self._report_if_gone, lost, entry, attempt)

    async def _report_if_gone(self, lost: JobRun, entry: int, attempt: int) -> None:
        self._unanswered[id(lost)] = lost
        try:
            if not await self._stopped(lost.job_id, entry, attempt, lost.worker_id):
                self._report(lost)
        finally:
            self._unanswered.pop(id(lost), None)
            if not self._unanswered:
                self._answered.set()

    async def settle(self, timeout: float) -> None:
        """As this worker stops: wait up to `timeout` seconds for the answers its reports
        wait for (a live worker answers at once, a dying one is gone once its sessions
        end), then say which attempts stay unreported."""
        with anyio.move_on_after(timeout):
            while self._unanswered:
                self._answered = anyio.Event()
                await self._answered.wait()
        for lost in self._unanswered.values():
            logger.warning(
                "job %s: this worker stops before worker %s answered, so its attempt %s is "
                "reported only if that worker lives",
                lost.job_id,
                lost.worker_id,
                lost.attempt,
            )

    def _report(self, lost: JobRun) -> None:
        if lost.duration is not None:
            # Found lost only now: its upper bound runs until now.
            lost.duration = max(0.0, time.time() - lost.started_at)
        self._on_lost([lost])

    async def _stopped(self, job_id: int, entry: int, attempt: int, previous: uuid.UUID) -> bool:
        """Return once `previous` runs no other attempt of the job than `attempt` of row
        `entry`: True if it said so (`released`), False if it is gone."""
        key = (job_id, entry)
        wait = _Wait(previous)
        waits = self._waits.setdefault(key, set())
        waits.add(wait)
        asked = f"ask {job_id} {entry} {attempt} {previous}"
        retry = RetryDelay()
        try:
            while not wait.released:
                wait.changed = anyio.Event()
                try:
                    alive = await self._pool.fetchval(self._sql.ask_release, previous, asked)
                except DATABASE_ERRORS as exc:
                    logger.warning("cannot ask worker %s about job %s: %s", previous, job_id, exc)
                    with anyio.move_on_after(retry.next()):
                        await wait.changed.wait()
                    continue
                if not alive:
                    break
                logger.info("job %s: waiting for worker %s to stop its attempt", job_id, previous)
                await wait.changed.wait()
        finally:
            waits.discard(wait)
            if not waits and self._waits.get(key) is waits:
                del self._waits[key]
        return wait.released

    async def _let_go(self, job_id: int, entry: int, attempt: int) -> bool:
        retry = RetryDelay()
        while True:
            try:
                current = await self._pool.fetchval(self._sql.let_go, job_id, entry, attempt)
            except DATABASE_ERRORS as exc:
                logger.warning("cannot record that job %s may run: %s", job_id, exc)
                await anyio.sleep(retry.next())
                continue
            return current is not None

    def released(self, job_id: int, entry: int, sender: str | None) -> None:
        """Worker `sender` says it runs no attempt of the job's row `entry` (any more).

        Only a wait for that very worker ends: another worker may say the same of the same
        row, one that took the job over from it and lost it in turn while waiting (its own
        attempt never ran), and the worker waited for may still run its attempt. None: the
        message of a worker of an older version, which did not say who it was."""
        for wait in self._waits.get((job_id, entry), ()):
            if sender is None or sender == wait.previous:
                wait.released = True
                wait.changed.set()

    def recheck(self) -> None:
        """A worker is gone, or an answer may have been missed: ask again."""
        for waits in self._waits.values():
            for wait in waits:
                wait.changed.set()
