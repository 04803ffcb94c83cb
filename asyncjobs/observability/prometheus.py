"""Prometheus metrics (`pip install asyncjobs[prometheus]`): counters and histograms fed by
the hooks, queue depth read from the database at scrape time, served by
`asyncjobs worker --metrics-port 9464` or mounted as an ASGI route:

    metrics = PrometheusMetrics().install(app)
    api.mount("/metrics", metrics.asgi_app())

Labels are task, queue, outcome and state: never a job id or an argument. See README,
Monitoring, for every name.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, make_asgi_app
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import start_http_server
from prometheus_client.registry import Collector

from ..hooks import Enqueueing, JobRun
from .hook_metrics import HookMetrics
from .queue_stats import QueueStats

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer


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


class PrometheusMetrics(HookMetrics):
    """asyncjobs' metrics in a Prometheus registry (its own unless one is given)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        super().__init__()
        self.jobs = _JobMetrics()
        self.registry.register(self.jobs)
        self.registry.register(_QueueCollector(self.stats))
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

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
        jobs = self.jobs
        with jobs.lock:
            for call in event.calls:
                key = (call.task, call.options.queue)
                jobs.enqueued[key] = jobs.enqueued.get(key, 0) + 1

    def _started(self, run: JobRun) -> None:
        jobs = self.jobs
        key = (run.task, run.queue)
        with jobs.lock:
            jobs.running[key] = jobs.running.get(key, 0) + 1
            if run.waited is not None:
                waits = jobs.waits.get(key)
                if waits is None:
                    waits = jobs.waits[key] = _Histogram(WAIT_BUCKETS)
                waits.observe(max(0.0, run.waited))

    def _ended(self, run: JobRun) -> None:
        jobs = self.jobs
        key = (run.task, run.queue, run.outcome or "unknown")
        with jobs.lock:
            # An attempt lost with another worker (see JobRun.reported_by) never ran here.
            if run.reported_by is None:
                jobs.running[run.task, run.queue] -= 1
            jobs.finished[key] = jobs.finished.get(key, 0) + 1
            if run.duration is not None:
                runs = jobs.runs.get(key)
                if runs is None:
                    runs = jobs.runs[key] = _Histogram(RUN_BUCKETS)
                runs.observe(run.duration)

    def _worker_up(self, up: bool) -> None:
        self.jobs.worker_up = 1 if up else 0


class _Histogram:
    """A histogram's counts per bucket (not cumulative), count and sum."""

    __slots__ = ("bounds", "counts", "les", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = bounds
        # The `le` labels: "0.005", "1.0", ..., "+Inf", as prometheus_client writes them.
        self.les = [*(repr(float(bound)) for bound in bounds), "+Inf"]
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # Prometheus buckets are "less than or equal": the first bound >= value.
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative counts by upper bound, as prometheus_client's families take them."""
        total = 0
        out: list[tuple[str, float]] = []
        for le, count in zip(self.les, self.counts, strict=True):
            total += count
            out.append((le, total))
        return out


class _JobMetrics(Collector):
    """The job counts, kept as plain numbers under one lock and turned into metric families
    when scraped: this runs for every job, and prometheus_client's metric objects cost a
    label lookup and a lock per update (five per job)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.enqueued: dict[tuple[str, str], int] = {}
        self.running: dict[tuple[str, str], int] = {}
        self.waits: dict[tuple[str, str], _Histogram] = {}
        self.finished: dict[tuple[str, str, str], int] = {}
        self.runs: dict[tuple[str, str, str], _Histogram] = {}
        self.worker_up = 0

    def describe(self) -> Iterable[Metric]:
        return self.collect()

    def collect(self) -> Iterable[Metric]:
        by_job, by_outcome = ["task", "queue"], ["task", "queue", "outcome"]
        enqueued = CounterMetricFamily(
            "asyncjobs_jobs_enqueued", "Jobs enqueued by this process.", labels=by_job
        )
        finished = CounterMetricFamily(
            "asyncjobs_jobs_finished",
            "Attempts ended on this worker, by outcome (succeeded, failed, retried, "
            "timed_out, cancelled, lost, discarded, released).",
            labels=by_outcome,
        )
        runs = HistogramMetricFamily(
            "asyncjobs_job_run_seconds", "How long attempts ran, by outcome.", labels=by_outcome
        )
        waits = HistogramMetricFamily(
            "asyncjobs_job_wait_seconds",
            "How long jobs waited from due to their attempt's start.",
            labels=by_job,
        )
        running = GaugeMetricFamily(
            "asyncjobs_jobs_running", "Jobs running on this worker.", labels=by_job
        )
        up = GaugeMetricFamily("asyncjobs_worker_up", "1 while this process's worker runs.")
        with self.lock:
            for key, count in self.enqueued.items():
                enqueued.add_metric(key, count)
            for outcome_key, count in self.finished.items():
                finished.add_metric(outcome_key, count)
            for outcome_key, histogram in self.runs.items():
                runs.add_metric(outcome_key, histogram.buckets(), histogram.sum)
            for key, histogram in self.waits.items():
                waits.add_metric(key, histogram.buckets(), histogram.sum)
            for key, count in self.running.items():
                running.add_metric(key, count)
            up.add_metric([], self.worker_up)
        return [enqueued, finished, runs, waits, running, up]


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
            "processing; awaiting: waiting for parent jobs), read from the database.",
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
