"""A worker app traced with the OpenTelemetry SDK and its in-memory exporter, for tests that
run it as a subprocess (`asyncjobs worker tests.otel_worker_app:app`): when the worker
stops, its finished spans are written as JSON to $SPANS_FILE."""

from __future__ import annotations

import json
import os

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import asyncjobs
from asyncjobs.observability.tracing import Tracing

app = asyncjobs.App()
exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
Tracing(provider, parent=os.environ.get("TRACE_PARENT") == "1").install(app)


@app.task(name="traced", max_attempts=1)
async def traced(x: int) -> int:
    with provider.get_tracer("tests").start_as_current_span("inner"):
        if x < 0:
            raise ValueError(f"negative: {x}")
    return x


@app.hooks.on_worker_stop
def dump(_worker: asyncjobs.Worker) -> None:
    spans = [json.loads(span.to_json()) for span in exporter.get_finished_spans()]
    with open(os.environ["SPANS_FILE"], "w") as out:
        json.dump(spans, out)
