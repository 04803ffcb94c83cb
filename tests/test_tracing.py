"""OpenTelemetry tracing (asyncjobs/observability/tracing.py), read back from the SDK's
in-memory exporter: a request's span, its enqueue's producer span and the job's consumer
span in one trace (in this process, and with the worker in another), attributes per the
messaging conventions, a failing attempt's error."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import asyncjobs
from asyncjobs.observability.tracing import Tracing
from tests.helpers import Spawn, until, workers_up


@pytest.fixture
def traced() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def _one(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    found = [span for span in spans if span.name == name]
    assert len(found) == 1, [span.name for span in spans]
    return found[0]


async def test_request_enqueue_and_attempt_are_one_trace(
    app: asyncjobs.App, traced: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = traced
    Tracing(provider, parent=True).install(app)
    tracer = provider.get_tracer("tests")

    @app.task(queue="mail")
    async def send(to: str) -> str:
        with tracer.start_as_current_span("smtp"):
            return to

    async with app.client() as client, app.worker():
        with tracer.start_as_current_span("POST /signup") as request:
            job_id = await client.enqueue(send, "a@example.com")
        await client.wait(job_id, timeout=10)
        await until(client, job_id, lambda _: len(exporter.get_finished_spans()) >= 4)
    spans = list(exporter.get_finished_spans())
    request_span = _one(spans, "POST /signup")
    sent = _one(spans, "send mail")
    processed = _one(spans, "process mail")
    inner = _one(spans, "smtp")
    trace_id = request.get_span_context().trace_id
    assert {s.context.trace_id for s in (sent, processed, inner)} == {trace_id}
    assert sent.parent is not None and sent.parent.span_id == request_span.context.span_id
    assert processed.parent is not None and processed.parent.span_id == sent.context.span_id
    assert [link.context.span_id for link in processed.links] == [sent.context.span_id]
    assert inner.parent is not None and inner.parent.span_id == processed.context.span_id

    assert sent.kind is SpanKind.PRODUCER and processed.kind is SpanKind.CONSUMER
    assert dict(sent.attributes or {}) == {
        "messaging.system": "asyncjobs",
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.destination.name": "mail",
        "asyncjobs.task": send.name,
        "messaging.message.id": str(job_id),
    }
    attributes = dict(processed.attributes or {})
    assert attributes.pop("messaging.client.id")
    assert attributes == {
        "messaging.system": "asyncjobs",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": "mail",
        "messaging.message.id": str(job_id),
        "asyncjobs.task": send.name,
        "asyncjobs.attempt": 1,
        "asyncjobs.outcome": "succeeded",
    }
    assert processed.status.status_code is StatusCode.UNSET


async def test_by_default_an_attempt_is_linked_to_its_enqueue_in_a_trace_of_its_own(
    app: asyncjobs.App, traced: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = traced
    Tracing(provider).install(app)

    @app.task
    async def noop(n: int) -> None: ...

    async with app.client() as client, app.worker():
        ids = await client.enqueue_many([noop.call(1), noop.call(2), noop.call(3)])
        for job_id in ids:
            await client.wait(job_id, timeout=10)
        await until(client, ids[-1], lambda _: len(exporter.get_finished_spans()) >= 4)
    spans = list(exporter.get_finished_spans())
    sent = _one(spans, "send default")
    assert (sent.attributes or {})["messaging.batch.message_count"] == 3
    assert "messaging.message.id" not in (sent.attributes or {})
    processed = [span for span in spans if span.name == "process default"]
    assert sorted((s.attributes or {})["messaging.message.id"] for s in processed) == sorted(
        str(i) for i in ids
    )
    for span in processed:
        assert span.parent is None
        assert span.context.trace_id != sent.context.trace_id
        assert [link.context.span_id for link in span.links] == [sent.context.span_id]


async def test_a_failing_attempt_span_has_the_error(
    app: asyncjobs.App, traced: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = traced
    Tracing(provider).install(app)

    @app.task(max_attempts=2, retry=asyncjobs.Backoff(base=0.01, cap=0.01))
    async def broken() -> None:
        raise ValueError("bad input")

    async with app.client() as client, app.worker():
        job_id = await client.enqueue(broken)
        with pytest.raises(asyncjobs.JobFailed):
            await client.wait(job_id, timeout=10)
        await until(client, job_id, lambda _: len(exporter.get_finished_spans()) >= 3)
    processed = sorted(
        (s for s in exporter.get_finished_spans() if s.name == "process default"),
        key=lambda s: (s.attributes or {})["asyncjobs.attempt"],
    )
    assert [(s.attributes or {})["asyncjobs.outcome"] for s in processed] == ["retried", "failed"]
    for span in processed:
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description == "bad input"
        assert (span.attributes or {})["error.type"] == "ValueError"
        (event,) = span.events
        assert event.name == "exception"
        assert (event.attributes or {})["exception.type"] == "ValueError"
        assert "bad input" in str((event.attributes or {})["exception.stacktrace"])


async def test_a_failed_enqueue_span_has_the_error(
    app: asyncjobs.App,
    client: asyncjobs.Client,
    traced: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = traced
    Tracing(provider).install(app)

    @app.task
    async def child() -> None: ...

    with pytest.raises(asyncjobs.JobNotFound):
        await client.enqueue(child.options(after=[10**12]))
    sent = _one(list(exporter.get_finished_spans()), "send default")
    assert sent.status.status_code is StatusCode.ERROR
    assert (sent.attributes or {})["error.type"] == "JobNotFound"


@pytest.mark.parametrize("parent", [True, False])
async def test_a_worker_process_continues_the_request_trace(
    app: asyncjobs.App,
    traced: tuple[TracerProvider, InMemorySpanExporter],
    spawn_worker: Spawn,
    tmp_path: Path,
    parent: bool,
) -> None:
    """The client here, the worker in a subprocess with its own SDK: the context travels
    in the job's row."""
    provider, exporter = traced
    Tracing(provider).install(app)
    spans_file = tmp_path / "spans.json"

    @app.task(name="traced", max_attempts=1)  # runs in the worker: tests/otel_worker_app.py
    async def traced(x: int) -> int: ...

    async with app.client() as client:
        with provider.get_tracer("tests").start_as_current_span("POST /orders") as request:
            ok = await client.enqueue(traced, 7)
            bad = await client.enqueue(traced, -1)
        worker = _spawn(spawn_worker, spans_file, parent)
        await workers_up(client, 1)
        assert await client.wait(ok, timeout=20) == 7
        with pytest.raises(asyncjobs.JobFailed):
            await client.wait(bad, timeout=20)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=20) == 0
    sent = [s for s in exporter.get_finished_spans() if s.name == "send default"]
    assert len(sent) == 2
    theirs = json.loads(spans_file.read_text())
    processed = {
        s["attributes"]["messaging.message.id"]: s for s in theirs if s["name"] == "process default"
    }
    assert set(processed) == {str(ok), str(bad)}
    request_trace = f"0x{request.get_span_context().trace_id:032x}"
    for span, send_span in zip((processed[str(ok)], processed[str(bad)]), sent, strict=True):
        send_id = f"0x{send_span.context.span_id:016x}"
        assert [link["context"]["span_id"] for link in span["links"]] == [send_id]
        assert [link["context"]["trace_id"] for link in span["links"]] == [request_trace]
        if parent:
            assert span["context"]["trace_id"] == request_trace
            assert span["parent_id"] == send_id
        else:
            assert span["context"]["trace_id"] != request_trace
            assert span["parent_id"] is None
    failed = processed[str(bad)]
    assert failed["status"]["status_code"] == "ERROR"
    assert failed["attributes"]["error.type"] == "ValueError"
    inner = [s for s in theirs if s["name"] == "inner"]
    assert {s["parent_id"] for s in inner} == {s["context"]["span_id"] for s in processed.values()}


def _spawn(spawn_worker: Spawn, spans_file: Path, parent: bool) -> Any:
    env = {"SPANS_FILE": str(spans_file), "TRACE_PARENT": "1" if parent else "0"}
    return spawn_worker("--concurrency", "2", env=env, app="tests.otel_worker_app:app")


async def test_without_an_sdk_tracing_stores_nothing_and_jobs_run(
    app: asyncjobs.App, admin: Any
) -> None:
    from opentelemetry import trace

    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    Tracing().install(app)  # the global provider: none set, the API's stand-in

    @app.task
    async def add(a: int, b: int) -> int:
        return a + b

    async with app.client() as client, app.worker():
        job_id = await client.enqueue(add, 1, 2)
        assert await client.wait(job_id, timeout=10) == 3
    stored = await admin.fetchval(
        f'SELECT trace_context FROM "{app.schema}".jobs WHERE id = $1', job_id
    )
    assert stored is None


@pytest.mark.parametrize("parent", [False, True])
async def test_an_attempt_lost_with_its_worker_gets_its_span_from_the_worker_that_reports_it(
    app: asyncjobs.App,
    traced: tuple[TracerProvider, InMemorySpanExporter],
    spawn_worker: Spawn,
    parent: bool,
) -> None:
    """Its worker (a subprocess) is SIGKILLed mid-attempt; this process's worker takes the
    job over and reports the attempt, with its span: from the attempt's start until then,
    linked to (or the child of) the enqueue's span, with the error WorkerLost."""
    provider, exporter = traced
    Tracing(provider, parent=parent).install(app)

    @app.task(name="sleep", max_attempts=3)  # as in tests/worker_app.py, run by both
    async def sleep(seconds: float) -> str:
        return "slept"

    async with app.client() as client:
        with provider.get_tracer("tests").start_as_current_span("POST /orders"):
            job_id = await client.enqueue(sleep, 30.0)
        dead = spawn_worker("--hand-off-after", "8")
        job = await until(client, job_id, lambda j: j.state == "processing")
        assert job.started_at is not None and job.worker_id is not None
        dead.send_signal(signal.SIGKILL)
        async with app.worker() as worker:
            assert await client.wait(job_id, timeout=30) == "slept"
            await until(client, job_id, lambda _: len(exporter.get_finished_spans()) >= 3)
    spans = list(exporter.get_finished_spans())
    sent = _one(spans, "send default")
    processed = {
        (s.attributes or {})["asyncjobs.attempt"]: s for s in spans if s.name == "process default"
    }
    assert sorted(processed) == [1, 2]
    lost = processed[1]
    assert lost.kind is SpanKind.CONSUMER
    assert dict(lost.attributes or {}) == {
        "messaging.system": "asyncjobs",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": "default",
        "messaging.message.id": str(job_id),
        "messaging.client.id": str(job.worker_id),
        "asyncjobs.task": "sleep",
        "asyncjobs.attempt": 1,
        "asyncjobs.outcome": "lost",
        "asyncjobs.reported_by": str(worker.id),
        "error.type": "WorkerLost",
    }
    assert lost.status.status_code is StatusCode.ERROR
    assert lost.status.description == "the worker running attempt 1 was lost"
    (event,) = lost.events
    assert event.name == "exception"
    assert dict(event.attributes or {}) == {
        "exception.type": "WorkerLost",
        "exception.message": "the worker running attempt 1 was lost",
    }
    # From the attempt's start (the server's clock, on this machine) until it was found.
    assert lost.start_time is not None and lost.end_time is not None
    assert abs(lost.start_time / 1e9 - job.started_at.timestamp()) < 1.0
    assert lost.start_time < lost.end_time <= processed[2].end_time  # type: ignore[operator]
    assert [link.context.span_id for link in lost.links] == [sent.context.span_id]
    if parent:
        assert lost.parent is not None and lost.parent.span_id == sent.context.span_id
    else:
        assert lost.parent is None and lost.context.trace_id != sent.context.trace_id
    assert (processed[2].attributes or {})["asyncjobs.outcome"] == "succeeded"
    assert "asyncjobs.reported_by" not in (processed[2].attributes or {})
