"""The benchmark's asyncjobs tasks; the worker runs `python -m asyncjobs worker
benchmarks.systems.asyncjobs_tasks:app` with $ASYNCJOBS_DSN and $ASYNCJOBS_SCHEMA set."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import asyncjobs
from benchmarks.marks import emit
from benchmarks.marks import tick as count_tick

app = asyncjobs.App()


def _observe(app: asyncjobs.App, parts: set[str]) -> None:
    """Tracing and OpenTelemetry metrics with the SDK and exporters that drop everything
    (the SDK's work, none of the network's); the Prometheus endpoint is the command's
    --metrics-port. `parts`: which of trace, trace-sampled (1% of traces recorded, as
    the README advises for a high-rate queue), otel-metrics (and prometheus) are on."""
    from asyncjobs.observability.otel_metrics import OtelMetrics
    from asyncjobs.observability.tracing import Tracing

    tracer_provider, meter_provider = sdk_providers(parts)
    if tracer_provider is not None:
        Tracing(tracer_provider).install(app)
    if meter_provider is not None:
        OtelMetrics(meter_provider).install(app)


def sdk_providers(parts: set[str]) -> tuple[Any, Any]:
    """The SDK's tracer and meter providers for `parts` (None: that part is off), with
    exporters that drop everything, as a user's SDK with its default processors."""
    from collections.abc import Sequence

    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import (
        MetricExporter,
        MetricExportResult,
        PeriodicExportingMetricReader,
    )
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    class NoSpans(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    class NoMetrics(MetricExporter):
        def export(self, metrics_data, timeout_millis=10_000, **kwargs):  # type: ignore[no-untyped-def]
            return MetricExportResult.SUCCESS

        def force_flush(self, timeout_millis: float = 10_000) -> bool:
            return True

        def shutdown(self, timeout_millis: float = 30_000, **kwargs: object) -> None:
            pass

    tracer_provider = meter_provider = None
    if "trace" in parts or "trace-sampled" in parts:
        sampler = ParentBased(TraceIdRatioBased(0.01)) if "trace-sampled" in parts else None
        tracer_provider = TracerProvider(sampler=sampler)
        tracer_provider.add_span_processor(BatchSpanProcessor(NoSpans()))
    if "otel-metrics" in parts:
        reader = PeriodicExportingMetricReader(NoMetrics(), export_interval_millis=5000)
        meter_provider = MeterProvider(metric_readers=[reader])
    return tracer_provider, meter_provider


# Which parts drain_observed turns on: $BENCH_OBSERVE_PARTS, default all of them.
PARTS = set(os.environ.get("BENCH_OBSERVE_PARTS", "trace,otel-metrics,prometheus").split(","))

if os.environ.get("BENCH_OBSERVE") == "1":
    _observe(app, PARTS)


@app.task(name="bench.noop")
async def noop(i: int) -> None:
    """Does nothing: drain and enqueue throughput."""


@app.task(name="bench.tick")
async def tick(i: int) -> None:
    """Counts itself: the held-transaction scenario keeps a steady backlog with it."""
    count_tick()


@app.task(name="bench.mark")
async def mark(key: str) -> None:
    """Records when it started: pickup latency."""
    emit("start", key)


@app.task(name="bench.sleeper")
async def sleeper(key: str, seconds: float) -> None:
    """Records its start, then sleeps; records the moment it is interrupted."""
    emit("start", key)
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        emit("cancelled", key)
        raise
