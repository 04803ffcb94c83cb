"""Writes what running jobs report (progress, log lines, checkpoints) in batches, on the
pool.

Jobs only change memory; this writes the latest of each at most every `interval`, one
statement for all of them, and never on a claim connection. Each write is guarded by the
attempt that made it, so a job cancelled, requeued or finished meanwhile gets nothing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

import anyio

from ..db.connections import DATABASE_ERRORS, connection_problem
from ..db.parameters import ReportProgress
from ..db.pool import Pool
from ..errors import ConnectionFailed
from ..job_context import LOG_LINES, JobContext, Taken
from ..serialization import dumps

logger = logging.getLogger("asyncjobs.progress")


class ProgressWriter:
    """Collects changed job contexts (from any thread) and writes them in batches."""

    def __init__(self, pool: Pool, report_progress_sql: str, interval: float = 0.5) -> None:
        self._pool = pool
        self._sql = report_progress_sql
        self._interval = interval
        self._dirty: set[JobContext] = set()
        self._dirty_lock = threading.Lock()
        # One write at a time, so a job's final flush lands after any write in flight.
        self._writing = anyio.Lock()

    def mark(self, context: JobContext) -> None:
        """`context` has something new to write (called by the job, on any thread)."""
        with self._dirty_lock:
            self._dirty.add(context)

    async def run(self) -> None:
        """Write what changed, every interval, until cancelled."""
        while True:
            await anyio.sleep(self._interval)
            with self._dirty_lock:
                dirty, self._dirty = self._dirty, set()
            if dirty:
                await self._write(dirty)

    def needs_flush(self, context: JobContext) -> bool:
        """Whether `flush(context)` has anything to do: a report not written yet, or a write
        in flight that the outcome must not overtake."""
        return context.pending or self._writing.locked()

    async def flush(self, context: JobContext) -> None:
        """Write what `context` still holds: its attempt is over, its outcome comes next."""
        with self._dirty_lock:
            self._dirty.discard(context)
        await self._write([context])

    async def save(self, context: JobContext) -> None:
        """Write what `context` holds now, for `save_checkpoint`: the context learns whether
        it was written. Raises ConnectionFailed if it can't be now (it stays pending)."""
        with self._dirty_lock:
            self._dirty.discard(context)
        async with self._writing:
            taken = _stopped_keeps(context)
            if taken is None:
                return  # a write in flight took it, and has told the context by now
            try:
                await self._execute([(context, taken)])
            except DATABASE_ERRORS as exc:
                if not connection_problem(exc):
                    logger.error(
                        "job %s: its checkpoint was refused and is dropped: %s", context.job_id, exc
                    )
                    return
                context.give_back(taken)
                raise ConnectionFailed(
                    f"cannot save the checkpoint of job {context.job_id} now ({exc}); it is "
                    "written with the next batch"
                ) from exc

    async def _write(self, contexts: Iterable[JobContext]) -> None:
        async with self._writing:
            batch = []
            for context in contexts:
                taken = _stopped_keeps(context)
                if taken is not None:
                    batch.append((context, taken))
            if not batch:
                return
            try:
                await self._execute(batch)
            except DATABASE_ERRORS as exc:
                if not connection_problem(exc):
                    # Something in the batch, not the connection: the others must not wait
                    # behind it forever, so each goes alone, and one refused alone is
                    # dropped.
                    for one in batch:
                        await self._alone(one)
                    return
                logger.warning("cannot write job progress (trying again later): %s", exc)
                for context, taken in batch:
                    context.give_back(taken)

    async def _alone(self, one: tuple[JobContext, Taken]) -> None:
        context, taken = one
        try:
            await self._execute([one])
        except DATABASE_ERRORS as exc:
            if not connection_problem(exc):
                logger.error(
                    "job %s: its progress report was refused and is dropped: %s",
                    context.job_id,
                    exc,
                )
                return
            logger.warning("cannot write job progress (trying again later): %s", exc)
            context.give_back(taken)

    async def _execute(self, batch: list[tuple[JobContext, Taken]]) -> None:
        record = ReportProgress([], [], [], [], [], [], log_lines=LOG_LINES, checkpoints=[])
        for context, (progress, lines, checkpoint) in batch:
            record.job_ids.append(context.job_id)
            record.entries.append(context.entry)
            record.attempts.append(context.attempt)
            record.progress.append(None if progress is None else progress[0])
            record.messages.append(None if progress is None else progress[1])
            record.lines.append(dumps(lines))
            record.checkpoints.append(None if checkpoint is None else checkpoint[0])
        rows = await self._pool.fetch(self._sql, *record)
        written = {(row["id"], row["attempt"], row["queue_entry"]) for row in rows}
        for context, taken in batch:
            if (context.job_id, context.attempt, context.entry) in written:
                context.written(taken)
            else:
                context.refused()


def _stopped_keeps(context: JobContext) -> Taken | None:
    """What to write of `context`. A stopped attempt (cancelled, requeued, timed out, shut
    down) writes no more progress or log lines, but its last checkpoint still counts while
    the attempt is the job's current one (the guard decides): a shutdown hands the job back
    only after it, so the next attempt resumes from there."""
    taken = context.take()
    if taken is None or not context.token.cancelled:
        return taken
    checkpoint = taken[2]
    return None if checkpoint is None else (None, [], checkpoint)
