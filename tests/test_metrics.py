"""Prometheus metrics (asyncjobs/observability/prometheus.py): a real scrape during a run,
parsed with prometheus_client's parser; counts match what ran, queue depth and the oldest
waiting job's age match the database."""

from __future__ import annotations

import datetime
import signal
import socket
import time
from typing import Any

import anyio
import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import asyncjobs
from asyncjobs.observability.prometheus import PrometheusMetrics
from tests.helpers import Spawn, run_cli, until, workers_up

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _depth_in_database(admin: asyncpg.Connection, schema: str) -> dict[str, Any]:
    """The same figures, the slow way: every active job of the table."""
    rows = await admin.fetch(
        f"""SELECT queue,
                   CASE WHEN state IN ('processing', 'awaiting') THEN state
                        WHEN run_at <= now() THEN 'queued' ELSE 'scheduled' END AS state,
                   count(*) AS jobs,
                   extract(epoch FROM now() - min(run_at))::float8 AS oldest
              FROM "{schema}".jobs
             WHERE state IN ('queued', 'scheduled', 'processing', 'awaiting')
             GROUP BY 1, 2"""
    )
    return {(r["queue"], r["state"]): (r["jobs"], r["oldest"]) for r in rows}


async def test_a_worker_serves_its_metrics_and_the_queue_depth(
    app: asyncjobs.App, spawn_worker: Spawn, admin: asyncpg.Connection, schema: str
) -> None:
    @app.task(name="quick")  # run by tests/worker_app.py
    async def quick(x: int) -> int: ...

    @app.task(name="big_error", max_attempts=1)
    async def big_error(chars: int) -> None: ...

    @app.task(name="sleep")
    async def sleep(seconds: float) -> str: ...

    port = _free_port()
    async with app.client() as client:
        # Waiting in queues this worker doesn't take, due an hour ago and later.
        await client.enqueue(
            quick.options(
                queue="stuck",
                run_at=datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1),
            ),
            1,
        )
        await client.enqueue_many([quick.options(queue="stuck").call(i) for i in range(3)])
        later = await client.enqueue_many(
            [quick.options(queue="later", delay=3600).call(i) for i in range(2)]
        )
        # Waiting for a parent that runs in an hour: 'awaiting', in its own queue.
        await client.enqueue_many(
            [quick.options(queue="children", after=later[0]).call(i) for i in range(3)]
        )
        worker = spawn_worker(
            "--queues", "default", "--metrics-port", str(port), "--metrics-host", "127.0.0.1"
        )
        await workers_up(client, 1)
        # Running while the metrics are read: 'processing'.
        sleeping = await client.enqueue(sleep, 60.0)
        await until(client, sleeping, lambda job: job.state == "processing")
        ok = await client.enqueue_many([quick.call(i) for i in range(5)])
        bad = await client.enqueue_many([big_error.call(10) for _ in range(2)])
        for job_id in ok:
            await client.wait(job_id, timeout=20)
        for job_id in bad:
            with pytest.raises(asyncjobs.JobFailed):
                await client.wait(job_id, timeout=20)
        async with httpx.AsyncClient() as http:
            # The counters are bumped just before each outcome is written: give the last
            # one a moment.
            deadline = time.monotonic() + 10
            while True:
                response = await http.get(f"http://127.0.0.1:{port}/metrics")
                assert response.status_code == 200
                samples = _parse(response.text)
                done = _value(
                    samples,
                    "asyncjobs_jobs_finished_total",
                    task="quick",
                    queue="default",
                    outcome="succeeded",
                )
                if done == 5 or time.monotonic() > deadline:
                    break
            expected = await _depth_in_database(admin, schema)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=20) == 0

    assert done == 5
    assert (
        _value(
            samples,
            "asyncjobs_jobs_finished_total",
            task="big_error",
            queue="default",
            outcome="failed",
        )
        == 2
    )
    assert (
        _value(
            samples,
            "asyncjobs_job_run_seconds_count",
            task="quick",
            queue="default",
            outcome="succeeded",
        )
        == 5
    )
    assert _value(samples, "asyncjobs_job_wait_seconds_count", task="quick", queue="default") == 5
    assert _value(samples, "asyncjobs_jobs_running", task="quick", queue="default") == 0
    assert _value(samples, "asyncjobs_worker_up") == 1
    # Nothing enqueued in the worker's process.
    assert not [key for key in samples if key[0] == "asyncjobs_jobs_enqueued_total"]
    # No job id or argument as a label anywhere.
    assert {name for _, labels in samples for name, _ in labels} <= {
        "task",
        "queue",
        "outcome",
        "state",
        "le",
    }

    depth = {
        (dict(labels)["queue"], dict(labels)["state"]): value
        for (name, labels), value in samples.items()
        if name == "asyncjobs_queue_depth"
    }
    assert depth == {key: jobs for key, (jobs, _) in expected.items()}
    assert depth == {
        ("stuck", "queued"): 4,
        ("later", "scheduled"): 2,
        ("children", "awaiting"): 3,
        ("default", "processing"): 1,
    }
    oldest = _value(samples, "asyncjobs_queue_oldest_age_seconds", queue="stuck")
    assert abs(oldest - expected["stuck", "queued"][1]) < 5
    assert 3600 <= oldest < 3700
    assert _value(samples, "asyncjobs_queue_oldest_age_seconds", queue="later") == 0


async def test_an_embedded_worker_and_client_serve_metrics_on_an_asgi_route(
    app: asyncjobs.App, admin: asyncpg.Connection, schema: str
) -> None:
    metrics = PrometheusMetrics().install(app)
    started: list[int] = []

    @app.task(queue="mail")
    async def send(n: int) -> None:
        started.append(n)

    @app.task(queue="other")
    async def other(n: int) -> None: ...

    transport = httpx.ASGITransport(app=metrics.asgi_app())
    async with (
        app.client() as client,
        httpx.AsyncClient(transport=transport, base_url="http://app") as http,
    ):
        metrics.attach(client)
        await client.enqueue_many([send.call(1), send.call(2), other.call(3)])
        samples = _parse((await http.get("/metrics")).text)
        assert _value(samples, "asyncjobs_jobs_enqueued_total", task=send.name, queue="mail") == 2
        assert _value(samples, "asyncjobs_jobs_enqueued_total", task=other.name, queue="other") == 1
        assert _value(samples, "asyncjobs_queue_depth", queue="mail", state="queued") == 2
        assert _value(samples, "asyncjobs_worker_up") == 0
        async with app.worker(queues=["mail"]):
            for _ in range(200):
                samples = _parse((await http.get("/metrics")).text)
                if (
                    _value(
                        samples,
                        "asyncjobs_jobs_finished_total",
                        task=send.name,
                        queue="mail",
                        outcome="succeeded",
                    )
                    == 2
                ):
                    break
                await anyio.sleep(0.02)
            assert _value(samples, "asyncjobs_worker_up") == 1
        samples = _parse((await http.get("/metrics")).text)
    assert sorted(started) == [1, 2]
    assert _value(samples, "asyncjobs_worker_up") == 0
    assert _value(samples, "asyncjobs_queue_depth", queue="mail", state="queued") == 0
    assert _value(samples, "asyncjobs_queue_depth", queue="other", state="queued") == 1
    expected = await _depth_in_database(admin, schema)
    assert expected == {("other", "queued"): (1, expected["other", "queued"][1])}


async def test_the_metrics_port_needs_a_free_port(env: dict[str, str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        done = await run_cli(
            env,
            "worker",
            "tests.worker_app:app",
            "--metrics-port",
            str(port),
            "--metrics-host",
            "127.0.0.1",
        )
    assert done.returncode == 2
    assert f"cannot serve metrics on 127.0.0.1:{port}" in done.stderr
