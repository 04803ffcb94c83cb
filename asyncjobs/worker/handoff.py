"""Hand-off: a job still running after `hand_off_after` seconds leaves its claim.

A claim is a transaction held open while its jobs run, and an open transaction pins the
vacuum horizon of the whole database: one job running for an hour would stop vacuum
everywhere for that hour. So a long job's attempt moves to the worker's key (statement
`hand_off`, on the lease session: jobs.lease), and its claim commits once nothing else
runs under it. The key is as good an owner as the claim: it comes free only when every
session of the worker has ended, and a peer watching it (watcher.py) then queues the job
again (rescue_worker).

A crash in the middle leaves one owner or none: before the hand-off commits the claim
owns the attempt; after it the key does, and a claimed row that comes back while the key
is held is stale (the start statement refuses it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence

import anyio

from ..cancel import CancelReason
from ..db.connections import DATABASE_ERRORS
from .attempt import RunningJob
from .lease import PING_TIMEOUT, LeaseSession

logger = logging.getLogger("asyncjobs.worker")

# How often due hand-offs are looked at: a hand-off may come this much late.
TICK = 0.1
# Seconds between tries of a hand-off that failed.
RETRY = 0.5


class HandOffs:
    """Hands running jobs off to the worker's key when they are due; one task per worker.

    Each job carries when it is due (`RunningJob.hand_off_at`); this task looks over the
    running jobs every TICK while any run. (A timer per job cost a quarter of a drain's
    speed, for jobs that almost all finish long before they are due.)
    """

    def __init__(
        self,
        lease: LeaseSession,
        *,
        after: float,
        running: Callable[[], Iterable[RunningJob]],
    ) -> None:
        self._lease = lease
        self._after = after
        self._running = running
        self._wake = anyio.Event()

    def add(self, job: RunningJob, after: float | None = None) -> None:
        """Hand `job` off if it still runs `after` seconds (default: hand_off_after) from
        its launch."""
        job.hand_off_at = job.launched + (self._after if after is None else after)
        self._wake.set()

    async def run(self) -> None:
        """Hand jobs off as they come due, until cancelled."""
        while True:
            self._wake = anyio.Event()
            now = time.monotonic()
            jobs = list(self._running())
            due = [job for job in jobs if job.hand_off_at <= now and self._owned_by_claim(job)]
            if due:
                await self._hand_off(due)
            if jobs:
                await anyio.sleep(TICK)
            else:
                await self._wake.wait()

    @staticmethod
    def _owned_by_claim(job: RunningJob) -> bool:
        return not job.handed_off and job.reason is None and not job.claim.lost

    async def _hand_off(self, jobs: Sequence[RunningJob]) -> None:
        try:
            moved = await self._lease.hand_off(jobs)
        except DATABASE_ERRORS as exc:
            # The claims still own them. But over a cut path the server may be about to let
            # their sessions go, and so another worker run the jobs: a job whose hand-off
            # fails past its first try's timeout stops here (MAX_HAND_OFF_AFTER keeps that
            # within what the server waits, see db/connections.py). A lease session being
            # replaced just now fails sooner and is tried again.
            now = time.monotonic()
            stopped = [job for job in jobs if now - job.launched >= self._after + PING_TIMEOUT]
            logger.warning(
                "cannot hand off jobs %s (%s); %s",
                [job.id for job in jobs],
                exc,
                f"interrupting {[job.id for job in stopped]}" if stopped else "retrying",
            )
            for job in jobs:
                if job in stopped:
                    job.cancel(CancelReason.CLAIM_LOST)
                    job.claim.give_up()
                else:
                    job.hand_off_at = now + RETRY
            return
        for job in jobs:
            if job.id not in moved:
                continue  # decided elsewhere (cancelled, requeued): a NOTIFY stops it
            await job.claim.hand_off(job)
