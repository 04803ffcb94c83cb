"""Metrics through the OpenTelemetry metrics API (`pip install asyncjobs[otel]`; a no-op
until an SDK's MeterProvider is configured), for any exporter the SDK has (OTLP, ...):

    asyncjobs.observability.otel_metrics.OtelMetrics().install(app)

The instruments follow the messaging conventions where they have one
(`messaging.client.sent.messages`, `messaging.process.duration`), and are named
`asyncjobs.*` otherwise. Queue depth is read from the database when the SDK collects.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from ..hooks import Enqueueing, JobRun
from .hook_metrics import HookMetrics
from .tracing import ERRORS, SYSTEM

if TYPE_CHECKING:
    pass


class OtelMetrics(HookMetrics):
    """asyncjobs' instruments on a meter of `meter_provider` (default: the global one)."""

    def __init__(self, meter_provider: metrics.MeterProvider | None = None) -> None:
        meter = metrics.get_meter("asyncjobs", meter_provider=meter_provider)
        super().__init__()
        self.sent = meter.create_counter(
            "messaging.client.sent.messages", unit="{message}", description="Jobs enqueued."
        )
        # Attempts ended, by outcome: the count of this histogram (one measurement per job
        # fewer than a counter beside it; the SDK's cost is per measurement).
        self.duration = meter.create_histogram(
            "messaging.process.duration",
            unit="s",
            description="How long attempts ran, by outcome (asyncjobs.outcome, error.type).",
        )
        self.wait = meter.create_histogram(
            "asyncjobs.job.wait_time",
            unit="s",
            description="How long jobs waited from due to their attempt's start.",
        )
        # Counted here and observed when the SDK collects, for the same reason.
        self._running: dict[tuple[str, str], int] = {}
        meter.create_observable_up_down_counter(
            "asyncjobs.jobs.running",
            callbacks=[self._observe_running],
            unit="{job}",
            description="Jobs running.",
        )
        self.workers = meter.create_up_down_counter(
            "asyncjobs.workers.up", unit="{worker}", description="Workers running."
        )
        self._attributes: dict[tuple[str, str], dict[str, Any]] = {}
        self._outcomes: dict[tuple[str, str, str], dict[str, Any]] = {}
        meter.create_observable_gauge(
            "asyncjobs.queue.depth",
            callbacks=[self._depth],
            unit="{job}",
            description="Jobs per queue and state (queued, scheduled, processing, awaiting).",
        )
        meter.create_observable_gauge(
            "asyncjobs.queue.oldest_age",
            callbacks=[self._oldest],
            unit="s",
            description="Seconds since the oldest job waiting in the queue was due.",
        )

    def _enqueued(self, event: Enqueueing) -> None:
        if event.job_ids is None:
            return
        counts: dict[tuple[str, str], int] = {}
        for call in event.calls:
            key = (call.task, call.options.queue)
            counts[key] = counts.get(key, 0) + 1
        for (task, queue), count in counts.items():
            self.sent.add(count, _attributes("send", task, queue))

    def _started(self, run: JobRun) -> None:
        key = (run.task, run.queue)
        self._running[key] = self._running.get(key, 0) + 1
        if run.waited is not None:
            attributes = self._attributes.get(key)
            if attributes is None:
                attributes = self._attributes[key] = _attributes("process", *key)
            self.wait.record(max(0.0, run.waited), attributes)

    def _ended(self, run: JobRun) -> None:
        # An attempt lost with another worker (see JobRun.reported_by) never ran here.
        if run.reported_by is None:
            self._running[run.task, run.queue] -= 1
        error_type = ""
        if run.outcome in ERRORS:
            error_type = (run.error or {}).get("type") or run.outcome or ""
        key = (run.task, run.queue, f"{run.outcome} {error_type}")
        attributes = self._outcomes.get(key)
        if attributes is None:
            attributes = _attributes("process", run.task, run.queue)
            attributes["asyncjobs.outcome"] = run.outcome or "unknown"
            if error_type:
                attributes["error.type"] = error_type
            self._outcomes[key] = attributes
        if run.duration is not None:
            self.duration.record(run.duration, attributes)

    def _observe_running(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(count, _attributes("process", task, queue))
            for (task, queue), count in list(self._running.items())
        ]

    def _worker_up(self, up: bool) -> None:
        self.workers.add(1 if up else -1, {"messaging.system": SYSTEM})

    def _depth(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(
                row.jobs,
                {
                    "messaging.system": SYSTEM,
                    "messaging.destination.name": row.queue,
                    "asyncjobs.state": row.state,
                },
            )
            for row in self.stats.current()
        ]

    def _oldest(self, _options: CallbackOptions) -> Iterable[Observation]:
        ages: dict[str, float] = {}
        for row in self.stats.current():
            ages.setdefault(row.queue, 0.0)
            if row.state == "queued" and row.oldest is not None:
                ages[row.queue] = max(0.0, row.oldest)
        return [
            Observation(age, {"messaging.system": SYSTEM, "messaging.destination.name": queue})
            for queue, age in ages.items()
        ]


def _attributes(operation: str, task: str, queue: str) -> dict[str, Any]:
    return {
        "messaging.system": SYSTEM,
        "messaging.operation.name": operation,
        "messaging.destination.name": queue,
        "asyncjobs.task": task,
    }
