"""`asyncjobs --log-format json`: one JSON object per line, each attempt's line with its
job's fields and the trace id of its process span (read back from the worker's spans)."""

from __future__ import annotations

import json
import logging
import signal
from pathlib import Path

import pytest

import asyncjobs
from asyncjobs.observability.logs import JsonFormatter
from tests.helpers import Spawn, workers_up


async def test_each_attempt_line_carries_the_job_and_its_trace(
    app: asyncjobs.App, spawn_worker: Spawn, tmp_path: Path
) -> None:
    @app.task(name="traced", max_attempts=1)  # runs in the worker: tests/otel_worker_app.py
    async def traced(x: int) -> int: ...

    spans_file = tmp_path / "spans.json"
    async with app.client() as client:
        ok = await client.enqueue(traced, 3)
        bad = await client.enqueue(traced, -3)
        worker = spawn_worker(
            env={"SPANS_FILE": str(spans_file)},
            app="tests.otel_worker_app:app",
            before=("--log-format", "json"),
        )
        await workers_up(client, 1)
        assert await client.wait(ok, timeout=20) == 3
        with pytest.raises(asyncjobs.JobFailed):
            await client.wait(bad, timeout=20)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=20) == 0
    assert worker.stdout is not None
    output = worker.stdout.read()
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    attempts = {line["job_id"]: line for line in lines if "job_id" in line}
    assert set(attempts) == {ok, bad}
    spans = json.loads(spans_file.read_text())
    trace_of = {
        int(s["attributes"]["messaging.message.id"]): s["context"]["trace_id"][2:]
        for s in spans
        if s["name"] == "process default"
    }
    for job_id, outcome in ((ok, "succeeded"), (bad, "failed")):
        line = attempts[job_id]
        assert line["logger"] == "asyncjobs.worker"
        assert (line["task"], line["queue"], line["attempt"], line["outcome"]) == (
            "traced",
            "default",
            1,
            outcome,
        )
        assert 0 <= line["duration"] < 5
        assert line["trace_id"] == trace_of[job_id]
    assert attempts[bad]["error_type"] == "ValueError"
    assert attempts[bad]["level"] == "WARNING"


def test_a_line_outside_any_span_has_no_trace_id() -> None:
    record = logging.LogRecord("asyncjobs.worker", logging.INFO, __file__, 1, "hi %s", ("x",), None)
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "hi x" and line["level"] == "INFO"
    assert "trace_id" not in line and "job_id" not in line
