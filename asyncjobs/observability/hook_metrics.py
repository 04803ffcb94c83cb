"""What both metrics backends (OpenTelemetry's API, Prometheus) share: they count through
the app's hooks, and read queue depth at collection time through a worker or client."""

from __future__ import annotations

from typing import TYPE_CHECKING, Self

from ..hooks import Enqueueing, JobRun
from .queue_stats import QueueStats, Source

if TYPE_CHECKING:
    from ..app import App
    from ..worker.worker import Worker


class HookMetrics:
    """Metrics kept by the app's hooks; a subclass says what each event counts."""

    def __init__(self) -> None:
        self.stats = QueueStats()

    def install(self, app: App) -> Self:
        """Count `app`'s enqueues and jobs (register before its workers start). A worker
        that starts is where queue depth is read from, unless `attach` named a source."""
        hooks = app.hooks
        hooks.on_enqueue(self._enqueued)
        hooks.on_job_start(self._started)
        hooks.on_job_end(self._ended)
        hooks.on_worker_start(self._worker_started)
        hooks.on_worker_stop(self._worker_stopped)
        return self

    def attach(self, source: Source) -> None:
        """Read queue depth through this client or worker (in its event loop)."""
        self.stats.attach(source)

    async def refresh(self) -> None:
        """Read queue depth now, for a collection that follows."""
        await self.stats.read()

    def _worker_started(self, worker: Worker) -> None:
        self._worker_up(True)
        if self.stats.source is None:
            self.stats.attach(worker)

    def _worker_stopped(self, worker: Worker) -> None:
        self._worker_up(False)
        self.stats.detach(worker)

    def _enqueued(self, event: Enqueueing) -> None:
        raise NotImplementedError

    def _started(self, run: JobRun) -> None:
        raise NotImplementedError

    def _ended(self, run: JobRun) -> None:
        raise NotImplementedError

    def _worker_up(self, up: bool) -> None:
        raise NotImplementedError
