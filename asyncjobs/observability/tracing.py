"""OpenTelemetry tracing (`pip install asyncjobs[otel]`: the API only; without an SDK
configured, spans cost next to nothing and nothing is sent).

    asyncjobs.observability.tracing.Tracing().install(app)

Per OpenTelemetry's messaging conventions: each enqueue call makes a producer span
`send {queue}` whose context is stored with its jobs, and each attempt of a job runs in a
consumer span `process {queue}`, linked to that context (and its child, with
`parent=True`). The job's own spans nest under its process span. An attempt lost with its
worker gets its span from the worker that reports it (see worker/lost.py): the dead worker
ended none.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from ..hooks import Enqueueing, JobRun

if TYPE_CHECKING:
    from ..app import App

SYSTEM = "asyncjobs"
# Outcomes that mark an attempt's span as an error.
ERRORS = frozenset({"failed", "retried", "timed_out", "lost"})
# How many stored enqueue contexts are kept read (see Tracing._read); then they start over.
SENT_CACHE = 1024


class Tracing:
    """Spans for enqueues and attempts, made with `tracer_provider` (default: the global
    one). `parent`: an attempt's span is a child of its enqueue's span (one trace from the
    request to the job), not only linked to it (a trace of its own, as the conventions
    recommend for work that runs later)."""

    def __init__(
        self, tracer_provider: trace.TracerProvider | None = None, *, parent: bool = False
    ):
        self._tracer = trace.get_tracer("asyncjobs", tracer_provider=tracer_provider)
        self._provider = tracer_provider
        self._parent = parent
        self._client_ids: dict[uuid.UUID, str] = {}
        # The enqueue's context as read from what a job stored, by what it stored: the jobs
        # of one enqueue_many (and the attempts of one job) share it, and reading it costs
        # the propagators' parsing (a fifth of an attempt's span, measured).
        self._sent: dict[
            tuple[tuple[str, str], ...], tuple[otel_context.Context, trace.SpanContext | None]
        ] = {}

    def _enabled(self) -> bool:
        """Whether spans go anywhere: a provider was given, or a global one set (until an
        SDK sets one, the API's stand-in makes spans that record nothing)."""
        if self._provider is not None:
            return True
        return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)

    def install(self, app: App) -> Tracing:
        """Trace `app`'s enqueues and jobs (before its workers start)."""
        app.hooks.around_enqueue(self.send)
        app.hooks.around_job(self.process)
        app.hooks.on_job_end(self.lost)
        return self

    @contextlib.asynccontextmanager
    async def send(self, event: Enqueueing) -> AsyncIterator[None]:
        """The producer span of one enqueue call; its context goes with the jobs."""
        queue = event.queues[0] if len(event.queues) == 1 else None
        attributes: dict[str, Any] = {
            "messaging.system": SYSTEM,
            "messaging.operation.type": "send",
            "messaging.operation.name": "send",
        }
        if queue is not None:
            attributes["messaging.destination.name"] = queue
        if event.count != 1:
            attributes["messaging.batch.message_count"] = event.count
        if len(event.tasks) == 1:
            attributes["asyncjobs.task"] = event.tasks[0]
        with self._tracer.start_as_current_span(
            f"send {queue}" if queue is not None else "send",
            kind=SpanKind.PRODUCER,
            attributes=attributes,
        ) as span:
            propagate.inject(event.trace_context)
            try:
                yield
            except BaseException as exc:
                span.set_attribute("error.type", type(exc).__qualname__)
                raise
            if event.job_ids is not None and len(event.job_ids) == 1:
                span.set_attribute("messaging.message.id", str(event.job_ids[0]))

    def process(self, run: JobRun) -> AbstractAsyncContextManager[None]:
        """The consumer span of one attempt, current while the job's code runs."""
        if not self._enabled():
            return _NOTHING
        client_id = self._client_ids.get(run.worker_id)
        if client_id is None:
            client_id = self._client_ids[run.worker_id] = str(run.worker_id)
        parent, link = self._origin(run)
        return _Processing(self._tracer, parent, link, run, client_id)

    def lost(self, run: JobRun) -> None:
        """The consumer span of an attempt lost with its worker, made as this worker reports
        it (`on_job_end` with `reported_by` set; nothing for any other attempt): from the
        attempt's start until now, with the attributes of the span its worker would have
        ended, `asyncjobs.reported_by`, and the error `WorkerLost`."""
        if run.reported_by is None or not self._enabled():
            return
        parent, link = self._origin(run)
        attributes = _attributes(run, str(run.worker_id))
        attributes["asyncjobs.reported_by"] = str(run.reported_by)
        span = self._tracer.start_span(
            f"process {run.queue}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes=attributes,
            links=(link,) if link is not None else None,
            start_time=int(run.started_at * 1e9),
            record_exception=False,
            set_status_on_exception=False,
        )
        _end(span, run)

    def _origin(self, run: JobRun) -> tuple[otel_context.Context, trace.Link | None]:
        """An attempt span's parent context (empty, unless `parent` and the enqueue stored
        one) and its link to the enqueue's span."""
        parent, sent = _EMPTY, None
        if run.trace_context:
            context, sent = self._read(run.trace_context)
            if self._parent and sent is not None:
                parent = context
        # A link of its own per span: the SDK writes into the links it is given.
        return parent, trace.Link(sent) if sent is not None else None

    def _read(
        self, stored: dict[str, str]
    ) -> tuple[otel_context.Context, trace.SpanContext | None]:
        """The context an enqueue stored, and its span's (None: no valid span)."""
        key = tuple(stored.items())
        found = self._sent.get(key)
        if found is None:
            context = propagate.extract(stored, context=_EMPTY)
            sent = trace.get_current_span(context).get_span_context()
            found = (context, sent if sent.is_valid else None)
            if len(self._sent) >= SENT_CACHE:
                self._sent.clear()
            self._sent[key] = found
        return found


class _Processing:
    """An attempt's span as an async context manager: a class rather than a generator, and
    the span started and made current by hand, because this runs for every job. The link
    goes in at the start, as the specification prefers (a sampler sees it), which also
    spares the span's lock and a second copy."""

    __slots__ = ("_client_id", "_link", "_parent", "_run", "_span", "_token", "_tracer")

    def __init__(
        self,
        tracer: trace.Tracer,
        parent: otel_context.Context,
        link: trace.Link | None,
        run: JobRun,
        client_id: str,
    ) -> None:
        self._tracer = tracer
        self._parent = parent
        self._link = link
        self._run = run
        self._client_id = client_id

    async def __aenter__(self) -> None:
        run = self._run
        # Not the worker's own context: an attempt's span starts a trace, or joins its
        # enqueue's (Tracing(parent=True)).
        self._span = span = self._tracer.start_span(
            f"process {run.queue}",
            context=self._parent,
            kind=SpanKind.CONSUMER,
            attributes=_attributes(run, self._client_id),
            links=(self._link,) if self._link is not None else None,
            record_exception=False,
            set_status_on_exception=False,
        )
        self._token = otel_context.attach(trace.set_span_in_context(span))

    async def __aexit__(self, *_exc: object) -> None:
        otel_context.detach(self._token)
        _end(self._span, self._run)


def _attributes(run: JobRun, client_id: str) -> dict[str, Any]:
    """An attempt span's attributes as it starts (`client_id`: its worker's id)."""
    return {
        "messaging.system": SYSTEM,
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": run.queue,
        "messaging.message.id": str(run.job_id),
        "messaging.client.id": client_id,
        "asyncjobs.task": run.task,
        "asyncjobs.attempt": run.attempt,
    }


def _end(span: trace.Span, run: JobRun) -> None:
    """End an attempt's span with what it ended in."""
    if run.outcome is not None:
        span.set_attribute("asyncjobs.outcome", run.outcome)
    if run.outcome in ERRORS:
        error = run.error or {}
        error_type = error.get("type") or run.outcome
        span.set_attribute("error.type", error_type)
        span.set_status(Status(StatusCode.ERROR, error.get("message") or run.outcome))
        if error:
            event = {"exception.type": error_type, "exception.message": error.get("message", "")}
            # None for a lost attempt: nothing was raised where it ran.
            if error.get("traceback") is not None:
                event["exception.stacktrace"] = error["traceback"]
            span.add_event("exception", event)
    span.end()


class _Nothing:
    """The attempt's span when no tracer provider is set: nothing at all."""

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *_exc: object) -> None:
        return None


_EMPTY = otel_context.Context()
_NOTHING = _Nothing()
