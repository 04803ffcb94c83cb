"""Prometheus metrics (`pip install asyncjobs[prometheus]`): counters and histograms fed by
the hooks, queue depth read from the database at scrape time, served by
`asyncjobs worker --metrics-port 9464` or mounted as an ASGI route:

    metrics = PrometheusMetrics().install(app)
    api.mount("/metrics", metrics.asgi_app())

Labels are task, queue, outcome and state: never a job id or an argument. See README,
Monitoring, for every name.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_asgi_app
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import start_http_server
from prometheus_client.registry import Collector

from ..hooks import Enqueueing, JobRun
from .queue_stats import QueueStats, Source

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from ..app import App
    from ..worker.worker import Worker

# Seconds. Jobs run from a millisecond to hours; waits from milliseconds (an idle worker)
# to hours (a backlog).
RUN_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800, 3600)
WAIT_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800, 3600)

ASGIApp = Callable[
    [
        MutableMapping[str, Any],
        Callable[[], Awaitable[MutableMapping[str, Any]]],
        Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ],
    Awaitable[None],
]


class PrometheusMetrics:
    """asyncjobs' metrics in a Prometheus registry (its own unless one is given)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.stats = QueueStats()
        by_job = ["task", "queue"]
        self.enqueued = Counter(
            "asyncjobs_jobs_enqueued",
            "Jobs enqueued by this process.",
            by_job,
            registry=self.registry,
        )
        self.finished = Counter(
            "asyncjobs_jobs_finished",
            "Attempts ended on this worker, by outcome (succeeded, failed, retried, "
            "timed_out, cancelled, lost, discarded, released).",
            [*by_job, "outcome"],
            registry=self.registry,
        )
        self.run_time = Histogram(
            "asyncjobs_job_run_seconds",
            "How long attempts ran, by outcome.",
            [*by_job, "outcome"],
            buckets=RUN_BUCKETS,
            registry=self.registry,
        )
        self.wait_time = Histogram(
            "asyncjobs_job_wait_seconds",
            "How long jobs waited from due to their attempt's start.",
            by_job,
            buckets=WAIT_BUCKETS,
            registry=self.registry,
        )
        self.running = Gauge(
            "asyncjobs_jobs_running", "Jobs running on this worker.", by_job, registry=self.registry
        )
        self.worker_up = Gauge(
            "asyncjobs_worker_up", "1 while this process's worker runs.", registry=self.registry
        )
        self.registry.register(_QueueCollector(self.stats))
        # The labelled children per (task, queue) and per (task, queue, outcome): `labels()`
        # costs a lock and a lookup, and this runs for every job.
        self._starts: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._ends: dict[tuple[str, str, str], tuple[Any, Any, Any]] = {}
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def install(self, app: App) -> PrometheusMetrics:
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
        """Read queue depth now, for the scrape that follows."""
        await self.stats.read()

    def asgi_app(self) -> ASGIApp:
        """An ASGI app serving the metrics (prometheus_client's), queue depth read first."""
        inner = make_asgi_app(self.registry)

        async def app(
            scope: MutableMapping[str, Any],
            receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
            send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
        ) -> None:
            if scope["type"] == "http":
                await self.refresh()
            await inner(scope, receive, send)

        return app

    def serve(self, port: int, host: str = "0.0.0.0") -> None:
        """Serve /metrics on `host:port` from a thread (prometheus_client's server); each
        scrape waits for the event loop to read queue depth."""
        self._server, self._thread = start_http_server(port, host, registry=self.registry)

    @property
    def port(self) -> int | None:
        """The port `serve` listens on (useful with port 0)."""
        return self._server.server_port if self._server is not None else None

    def close(self) -> None:
        """Stop the server `serve` started."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # -- hooks ------------------------------------------------------------------------

    def _enqueued(self, event: Enqueueing) -> None:
        if event.job_ids is None:
            return
        counts: dict[tuple[str, str], int] = {}
        for call in event.calls:
            key = (call.task, call.options.queue)
            counts[key] = counts.get(key, 0) + 1
        for (task, queue), count in counts.items():
            self.enqueued.labels(task, queue).inc(count)

    def _started(self, run: JobRun) -> None:
        key = (run.task, run.queue)
        children = self._starts.get(key)
        if children is None:
            children = self._starts[key] = (
                self.running.labels(*key),
                self.wait_time.labels(*key),
            )
        children[0].inc()
        if run.waited is not None:
            children[1].observe(max(0.0, run.waited))

    def _ended(self, run: JobRun) -> None:
        key = (run.task, run.queue, run.outcome or "unknown")
        children = self._ends.get(key)
        if children is None:
            children = self._ends[key] = (
                self.running.labels(run.task, run.queue),
                self.finished.labels(*key),
                self.run_time.labels(*key),
            )
        children[0].dec()
        children[1].inc()
        if run.duration is not None:
            children[2].observe(run.duration)

    def _worker_started(self, worker: Worker) -> None:
        self.worker_up.set(1)
        if self.stats.source is None:
            self.stats.attach(worker)

    def _worker_stopped(self, worker: Worker) -> None:
        self.worker_up.set(0)
        self.stats.detach(worker)


class _QueueCollector(Collector):
    """Queue depth and the oldest due job's age, read when scraped."""

    def __init__(self, stats: QueueStats) -> None:
        self._stats = stats

    def describe(self) -> Iterable[Metric]:
        return self._families([])

    def collect(self) -> Iterable[Metric]:
        return self._families(self._stats.current())

    def _families(self, rows: Sequence[Any]) -> list[Metric]:
        depth = GaugeMetricFamily(
            "asyncjobs_queue_depth",
            "Jobs per queue and state (queued: due and waiting; scheduled: due later; "
            "processing), read from the database.",
            labels=["queue", "state"],
        )
        oldest = GaugeMetricFamily(
            "asyncjobs_queue_oldest_age_seconds",
            "Seconds since the oldest job waiting in the queue was due (0: none waits).",
            labels=["queue"],
        )
        ages: dict[str, float] = {}
        for row in rows:
            depth.add_metric([row.queue, row.state], row.jobs)
            ages.setdefault(row.queue, 0.0)
            if row.state == "queued" and row.oldest is not None:
                ages[row.queue] = max(0.0, row.oldest)
        for queue, age in ages.items():
            oldest.add_metric([queue], age)
        return [depth, oldest]
