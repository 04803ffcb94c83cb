"""JSON log lines: `asyncjobs --log-format json ...`, or in your own logging config:

    {"formatters": {"json": {"()": "asyncjobs.observability.logs.JsonFormatter"}}, ...}

One object per line with the time, level, logger and message, the fields asyncjobs puts on
each attempt's line (job_id, task, queue, attempt, max_attempts, outcome, duration,
retry_in, error_type), and, with OpenTelemetry installed, the current trace and span ids
(an attempt's line is logged inside its `process` span).
"""

from __future__ import annotations

import datetime
import logging
from typing import Any

import orjson

try:
    from opentelemetry import trace
except ImportError:  # the `otel` extra is not installed: no trace ids
    trace = None  # type: ignore[assignment]

# The fields of an attempt's line (worker/runner.py, log_attempt), in this order.
JOB_FIELDS = (
    "job_id",
    "task",
    "queue",
    "attempt",
    "max_attempts",
    "outcome",
    "duration",
    "retry_in",
    "error_type",
)


class JsonFormatter(logging.Formatter):
    """Formats each record as one JSON object (see the module's docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = record.__dict__
        for name in JOB_FIELDS:
            value = fields.get(name)
            if value is not None:
                out[name] = value
        if trace is not None:
            context = trace.get_current_span().get_span_context()
            if context.is_valid:
                out["trace_id"] = format(context.trace_id, "032x")
                out["span_id"] = format(context.span_id, "016x")
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()
