"""Writes finished attempts' outcomes in batches, then ends the claims they ran under.

Order matters: an outcome is committed before its claim, so a crash in between leaves a
recorded outcome and a stale queue row (dropped at the next claim), never a lost job.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import asyncpg

from .claims import Claim
from .connections import DATABASE_ERRORS
from .job_runner import Outcome, RunningJob
from .serialization import dumps

logger = logging.getLogger("asyncjobs.completer")

# Keeps a batch's NOTIFY payload of job ids well under PostgreSQL's 8000-byte limit.
MAX_BATCH = 400


class Completer:
    """Collects outcomes from job runners and records them, many per round trip."""

    def __init__(self, pool: asyncpg.Pool, finish_jobs_sql: str) -> None:
        self._pool = pool
        self._sql = finish_jobs_sql
        self._pending: list[tuple[RunningJob, Outcome]] = []
        self._wake = anyio.Event()
        self._idle = anyio.Event()
        self._idle.set()
        self.written = 0

    def submit(self, job: RunningJob, outcome: Outcome) -> None:
        """Queue an outcome for writing; the claim ends once all its jobs are settled."""
        self._pending.append((job, outcome))
        self._idle = anyio.Event() if self._idle.is_set() else self._idle
        self._wake.set()

    async def drain(self) -> None:
        """Wait until every submitted outcome is written and its claim ended."""
        await self._idle.wait()

    async def run(self) -> None:
        """Write outcomes until cancelled."""
        delay = 0.05
        while True:
            if not self._pending:
                self._idle.set()
                await self._wake.wait()
                self._wake = anyio.Event()
                continue
            batch = self._pending[:MAX_BATCH]
            try:
                await self.finish_jobs(batch)
            except DATABASE_ERRORS as exc:
                logger.warning("cannot write outcomes (retrying in %.2fs): %s", delay, exc)
                await anyio.sleep(delay)
                delay = min(delay * 2, 2.0)
                # Outcomes of lost claims no longer count: their jobs are queued again.
                self._pending = [(j, o) for j, o in self._pending if not j.claim.lost]
                continue
            delay = 0.05
            del self._pending[: len(batch)]
            await self._settle(batch)

    async def finish_jobs(self, batch: list[tuple[RunningJob, Outcome]]) -> None:
        """Write a batch of outcomes, each guarded by its claim (statement `finish_jobs`)."""
        rows = [
            (job, outcome)
            for job, outcome in batch
            if outcome.kind != "discard" and not job.claim.lost
        ]
        if not rows:
            return
        columns: list[list[Any]] = [[], [], [], [], [], [], []]
        for job, outcome in rows:
            columns[0].append(job.id)
            columns[1].append(job.entry)
            columns[2].append(job.attempt)
            columns[3].append(outcome.kind)
            columns[4].append(outcome.result)
            columns[5].append(dumps(outcome.error) if outcome.error is not None else None)
            columns[6].append(outcome.delay)
        await self._pool.execute(self._sql, *columns)
        self.written += len(rows)

    async def _settle(self, batch: list[tuple[RunningJob, Outcome]]) -> None:
        ended: list[Claim] = []
        for job, _ in batch:
            claim = job.claim
            claim.jobs.discard(job)
            if claim.settled and claim not in ended:
                ended.append(claim)
        if ended:
            async with anyio.create_task_group() as tg:
                for claim in ended:
                    tg.start_soon(claim.end)
