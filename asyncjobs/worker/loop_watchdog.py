"""Noticing code that blocks the event loop: an async job that calls `time.sleep(30)` stalls
every other job of its worker, and their cancellation, and nothing else would say so."""

from __future__ import annotations

import logging
import sys
import threading
import time
from types import FrameType

import anyio

from .attempt import RunningJob

logger = logging.getLogger("asyncjobs.watchdog")

_ADVICE = (
    "blocking calls in an async job hold up every job of this worker and their "
    "cancellation: use `await anyio.sleep(...)`, `await anyio.to_thread.run_sync(fn)`, or a "
    "sync task (a plain def runs in a thread)"
)


class LoopWatchdog:
    """A task on the loop records a beat every `interval`; a thread that checks it logs a
    warning when the loop has been held for more than `threshold` seconds, naming the job
    found on the loop thread's stack. Costs one wake-up per interval, nothing per job."""

    def __init__(
        self, *, threshold: float = 1.0, interval: float = 0.1, still_blocked: float = 10.0
    ) -> None:
        self.threshold = threshold
        self.interval = interval
        # A loop that never comes back (an endless loop in a job) is reported once this
        # long into the block, since the report at its end would never come.
        self.still_blocked = still_blocked
        self._beat = 0.0
        self._loop_thread = 0

    async def run(self) -> None:
        """Beat until cancelled; the watching thread lives as long as this does."""
        self._loop_thread = threading.get_ident()
        self._beat = time.monotonic()
        stop = threading.Event()
        watcher = threading.Thread(
            target=self._watch, args=(stop,), name="asyncjobs-loop-watchdog", daemon=True
        )
        watcher.start()
        try:
            while True:
                self._beat = time.monotonic()
                await anyio.sleep(self.interval)
        finally:
            stop.set()

    def _watch(self, stop: threading.Event) -> None:
        since: float | None = None  # the last beat before the block being watched
        culprit = where = ""
        reported_still = False
        while not stop.wait(self.interval):
            beat = self._beat
            if since is None:
                if time.monotonic() - beat - self.interval > self.threshold:
                    # Read while the loop is still held: afterwards its stack is elsewhere.
                    since, reported_still = beat, False
                    culprit, where = self._culprit()
            elif beat != since:
                logger.warning(
                    "%s blocked the event loop for %.1fs (at %s); %s",
                    culprit,
                    beat - since,
                    where,
                    _ADVICE,
                )
                since = None
            elif not reported_still and time.monotonic() - since > self.still_blocked:
                reported_still = True
                logger.warning(
                    "%s has blocked the event loop for %.1fs so far (at %s); %s",
                    culprit,
                    time.monotonic() - since,
                    where,
                    _ADVICE,
                )

    def _culprit(self) -> tuple[str, str]:
        """Who holds the loop (the job whose run is on the loop thread's stack), and the
        innermost line of Python it is at."""
        frame: FrameType | None = sys._current_frames().get(self._loop_thread)
        where = _location(frame) if frame is not None else "an unknown place"
        while frame is not None:
            try:
                job = frame.f_locals.get("job")
            except Exception:  # a frame may end while it is read; keep looking outward
                job = None
            if isinstance(job, RunningJob):
                return f"job {job.id} ({job.task}, attempt {job.attempt})", where
            frame = frame.f_back
        return "code outside any job", where


def _location(frame: FrameType) -> str:
    return f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}"
