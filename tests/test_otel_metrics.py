"""Metrics through the OpenTelemetry API (asyncjobs/observability/otel_metrics.py), read
back with the SDK's in-memory reader: counts match what ran, depth matches the database."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import asyncjobs
from asyncjobs.observability.otel_metrics import OtelMetrics


def _points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    assert data is not None
    found: dict[str, list[Any]] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                found.setdefault(metric.name, []).extend(metric.data.data_points)
    return found


def _by(points: list[Any], **attributes: Any) -> list[Any]:
    return [p for p in points if all(p.attributes.get(k) == v for k, v in attributes.items())]


async def test_counts_durations_and_depth(
    app: asyncjobs.App, admin: asyncpg.Connection, schema: str
) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    metrics = OtelMetrics(provider).install(app)

    @app.task(queue="mail")
    async def send(n: int) -> None: ...

    @app.task(queue="mail", max_attempts=1)
    async def broken() -> None:
        raise KeyError("gone")

    @app.task(queue="parked")
    async def parked() -> None: ...

    async with app.client() as client:
        await client.enqueue_many([parked.call() for _ in range(3)])
        async with app.worker(queues=["mail"]):
            ids = await client.enqueue_many([send.call(i) for i in range(4)])
            bad = await client.enqueue(broken)
            for job_id in ids:
                await client.wait(job_id, timeout=10)
            with pytest.raises(asyncjobs.JobFailed):
                await client.wait(bad, timeout=10)
            await metrics.refresh()
            points = _points(reader)
    provider.shutdown()

    sent = points["messaging.client.sent.messages"]
    assert {(p.attributes["asyncjobs.task"], p.value) for p in sent} == {
        (parked.name, 3),
        (send.name, 4),
        (broken.name, 1),
    }
    assert all(p.attributes["messaging.system"] == "asyncjobs" for p in sent)
    # Attempts ended, by outcome: the count of the duration histogram.
    durations = points["messaging.process.duration"]
    (succeeded,) = _by(durations, **{"asyncjobs.task": send.name})
    assert succeeded.count == 4 and succeeded.attributes["asyncjobs.outcome"] == "succeeded"
    assert "error.type" not in succeeded.attributes
    (failed,) = _by(durations, **{"asyncjobs.task": broken.name})
    assert failed.count == 1
    assert failed.attributes["asyncjobs.outcome"] == "failed"
    assert failed.attributes["error.type"] == "KeyError"
    waits = _by(points["asyncjobs.job.wait_time"], **{"asyncjobs.task": send.name})
    assert waits[0].count == 4
    assert _by(points["asyncjobs.jobs.running"], **{"asyncjobs.task": send.name})[0].value == 0
    assert points["asyncjobs.workers.up"][0].value == 1
    depth = {
        (p.attributes["messaging.destination.name"], p.attributes["asyncjobs.state"]): p.value
        for p in points["asyncjobs.queue.depth"]
    }
    in_database = await admin.fetchval(
        f"""SELECT count(*) FROM "{schema}".jobs WHERE queue = 'parked' AND state = 'queued'"""
    )
    assert depth == {("parked", "queued"): in_database} == {("parked", "queued"): 3}
    (oldest,) = points["asyncjobs.queue.oldest_age"]
    assert 0 <= oldest.value < 30
