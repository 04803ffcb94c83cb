"""The dashboard: an ASGI app (Starlette) over a client of the app it shows.

Mount it (`api.mount("/jobs", app.dashboard(auth=...))`) or serve it with
`asyncjobs dashboard`. Its actions are the client's (a cancel stops a running job at once);
its reads are the statements of queries.sql here; its pages update by push (events.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import urllib.parse
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import TYPE_CHECKING, Any

import anyio
import jinja2
import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from ..errors import AsyncJobsError, ConfigurationError, JobNotFound, ScheduleNotFound
from ..job import Job, JobState
from . import charts, csrf
from .access import Access, Auth, resolve
from .events import Events
from .store import (
    COUNT_CAP,
    PAGE,
    SCAN_WINDOW,
    BadFilter,
    DashboardQueries,
    JobFilter,
    sample_percent,
)

if TYPE_CHECKING:
    from ..app import App
    from ..client.client import Client

logger = logging.getLogger("asyncjobs.dashboard")

# A bulk action on a filter touches at most this many jobs per confirmation.
BULK_LIMIT = 10_000

Redact = Callable[[Job[Any]], Job[Any]]

_JOB_ACTIONS = ("cancel", "requeue", "retry", "delete")


class Dashboard:
    """The dashboard of one app, as an ASGI app. Opens its client on the first request;
    `aclose()` (or `async with`) closes it."""

    def __init__(
        self,
        app: App,
        *,
        auth: Auth | None = None,
        read_only: bool = False,
        redact: Redact | None = None,
    ) -> None:
        self.app = app
        self.auth = auth
        self.read_only = read_only
        self.redact = redact
        self.sql = DashboardQueries.for_schema(app.schema)
        self._client: Client | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._lock: anyio.Lock | None = None
        self._dsn = ""
        self.events: Events | None = None
        folder = resources.files(__package__)
        self._templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(folder.joinpath("templates"))),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self._templates.filters["ago"] = _ago
        self._templates.filters["seconds"] = _seconds
        self._templates.filters["pretty"] = _pretty
        self._asgi = Starlette(
            routes=[
                Route("/", self._page(self.overview)),
                Route("/jobs", self._page(self.jobs)),
                Route("/jobs/bulk", self._action(None, self.bulk), methods=["POST"]),
                Route("/jobs/{job_id:int}", self._page(self.job)),
                Route(
                    "/jobs/{job_id:int}/{action}",
                    self._action(None, self.job_action),
                    methods=["POST"],
                ),
                Route("/workers", self._page(self.workers)),
                Route(
                    "/workers/stop", self._action("stop_workers", self.stop_all), methods=["POST"]
                ),
                Route(
                    "/workers/{worker_id}/stop",
                    self._action("stop_worker", self.stop_one),
                    methods=["POST"],
                ),
                Route("/queues", self._page(self.queues)),
                Route(
                    "/queues/{name}/{action}",
                    self._action(None, self.queue_action),
                    methods=["POST"],
                ),
                Route("/schedules", self._page(self.schedules)),
                Route(
                    "/schedules/{name}/{action}",
                    self._action(None, self.schedule_action),
                    methods=["POST"],
                ),
                Route("/events", self.stream),
                Mount("/static", StaticFiles(directory=str(folder.joinpath("static")))),
            ],
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        await self._asgi(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        # Served on its own (uvicorn): the client closes at shutdown. Mounted, the host's
        # lifespan does not reach here, and the client lives as long as the process.
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def __aenter__(self) -> Dashboard:
        await self.client()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def client(self) -> Client:
        """The dashboard's client, opened on first use."""
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            if self._client is None:
                from ..db.sql import Channels

                stack = contextlib.AsyncExitStack()
                client = await stack.enter_async_context(self.app.client())
                self._dsn = client._dsn
                self.events = Events(Channels.for_schema(self.app.schema))
                stack.push_async_callback(self.events.close)
                self._client, self._stack = client, stack
            return self._client

    async def aclose(self) -> None:
        """Close the client and the listening session."""
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    # -- plumbing -------------------------------------------------------------------

    def _page(
        self, handler: Callable[[Request, Client], Awaitable[tuple[str, dict[str, Any]]]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            access = await self._access(request)
            client = await self.client()
            try:
                template, context = await handler(request, client)
            except BadFilter as exc:
                return self._render(request, access, "error.html", {"message": str(exc)}, 400)
            except (JobNotFound, ScheduleNotFound) as exc:
                return self._render(request, access, "error.html", {"message": str(exc)}, 404)
            return self._render(request, access, template, context)

        return endpoint

    def _action(
        self,
        name: str | None,
        handler: Callable[[Request, Client, Access, dict[str, Any]], Awaitable[str]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            access = await self._access(request)
            form = await _form(request)
            refused = csrf.check(request, _one(form, csrf.FIELD))
            if refused is not None:
                return _answer(request, form, refused, 403)
            if name is not None and not access.allows(name):
                return _answer(request, form, f"{access.user} may not {name}", 403)
            client = await self.client()
            try:
                message = await handler(request, client, access, form)
            except HTTPException:
                raise
            except PermissionError as exc:
                return _answer(request, form, str(exc), 403)
            except (JobNotFound, ScheduleNotFound) as exc:
                return _answer(request, form, str(exc), 404)
            except (BadFilter, ConfigurationError, AsyncJobsError) as exc:
                return _answer(request, form, str(exc), 400)
            logger.info("dashboard: %s: %s", access.user, message)
            return _answer(request, form, message, 200)

        return endpoint

    async def _access(self, request: Request) -> Access:
        access = await resolve(request, self.auth, self.read_only)
        if access is None:
            raise HTTPException(
                403,
                "the dashboard answers local clients only, unless it is given an auth "
                "callable (app.dashboard(auth=...))",
            )
        return access

    def _render(
        self,
        request: Request,
        access: Access,
        template: str,
        context: dict[str, Any],
        status: int = 200,
    ) -> Response:
        root = request.scope.get("root_path", "")
        page = self._templates.get_template(template).render(
            root=root,
            access=access,
            csrf_token=csrf.token(request),
            path=request.url.path,
            flash=request.query_params.get("flash"),
            **context,
        )
        response = HTMLResponse(page, status_code=status)
        csrf.remember(request, response)
        return response

    def _shown(self, job: Job[Any]) -> Job[Any]:
        return self.redact(job) if self.redact is not None else job

    # -- pages ----------------------------------------------------------------------

    async def overview(self, request: Request, client: Client) -> tuple[str, dict[str, Any]]:
        size = await client.pool.fetchval(self.sql.table_size)
        percent = sample_percent(size)
        # Three reads of the sample and the workers' list, each on a connection of its own
        # at once: the page waits for the slowest, not for their sum.
        read: dict[str, Any] = {}

        async def fetch(name: str, sql: str) -> None:
            read[name] = await client.pool.fetch(sql, percent)

        async def list_workers() -> None:
            read["workers"] = await client.workers()

        async with anyio.create_task_group() as tg:
            tg.start_soon(fetch, "counts", self.sql.state_counts)
            tg.start_soon(fetch, "stats", self.sql.window_stats)
            tg.start_soon(fetch, "buckets", self.sql.throughput)
            tg.start_soon(list_workers)
        counts, stats, buckets = read["counts"], read["stats"], read["buckets"]
        states = [s.value for s in JobState]
        by_queue: dict[str, dict[str, int]] = {}
        totals = dict.fromkeys(states, 0)
        for row in counts:
            by_queue.setdefault(row["queue"], dict.fromkeys(states, 0))[row["state"]] = row["n"]
            totals[row["state"]] += row["n"]
        chart = charts.bars(
            [
                ("succeeded", [r["succeeded"] for r in buckets], "#3a7d44"),
                ("failed", [r["failed"] for r in buckets], "#b3261e"),
            ],
            [f"-{60 - 5 * r['bucket']}m" if r["bucket"] % 3 == 0 else "" for r in buckets],
        )
        workers = read["workers"]
        return "overview.html", {
            "states": states,
            "totals": totals,
            "by_queue": by_queue,
            "stats": stats,
            "chart": chart,
            "estimated": percent < 100,
            "workers_up": sum(1 for w in workers if w.stop_requested_at is None),
            "workers": workers,
        }

    async def jobs(self, request: Request, client: Client) -> tuple[str, dict[str, Any]]:
        chosen = JobFilter.parse(request.query_params)
        before = _bound(request.query_params.get("before"), "before")
        after = None
        async with client.pool.acquire() as conn, conn.transaction():
            await conn.execute(self.sql.custom_plans)
            start = before
            if not chosen.indexed:
                # No index finds these jobs: read one stretch of ids, newest first, once
                # for the page and the count (up to the count's cap of rows).
                if start is None:
                    start = await conn.fetchval(self.sql.newest_job_id) + 1
                if start - 1 > SCAN_WINDOW:
                    after = start - 1 - SCAN_WINDOW
                rows = await conn.fetch(
                    self.sql.list_jobs, *chosen.values(), before, after, COUNT_CAP + 1
                )
                matching = len(rows)
                more = matching > PAGE
            else:
                rows = await conn.fetch(
                    self.sql.list_jobs, *chosen.values(), before, after, PAGE + 1
                )
                more = len(rows) > PAGE
                # The count is of every match, the page of those before `before`.
                matching = (
                    len(rows)
                    if before is None and not more
                    else await conn.fetchval(
                        self.sql.count_jobs, *chosen.values(), None, None, COUNT_CAP + 1
                    )
                )
        rows = rows[:PAGE]
        next_query = (
            urllib.parse.urlencode({**chosen.query(), "before": rows[-1]["id"]}) if more else None
        )
        # The stretch searched, when the count (or the page) may miss older jobs.
        searched = None
        if after is not None and start is not None and (matching <= COUNT_CAP or not more):
            searched = (after + 1, start - 1)
        older_query = None
        if after is not None and not more:
            older_query = urllib.parse.urlencode({**chosen.query(), "before": after + 1})
        return "jobs.html", {
            "rows": rows,
            "filter": chosen,
            "states": [s.value for s in JobState],
            "matching": matching,
            "capped": matching > COUNT_CAP,
            "bulk_limit": BULK_LIMIT,
            "searched": searched,
            "older_query": older_query,
            "next_query": next_query,
            "filter_query": urllib.parse.urlencode(chosen.query()),
        }

    async def job(self, request: Request, client: Client) -> tuple[str, dict[str, Any]]:
        job = self._shown(await client.get(request.path_params["job_id"]))
        parents = await client.pool.fetch(self.sql.relatives, job.parents)
        children = await client.pool.fetch(self.sql.children, job.id)
        worker = None
        if job.worker_id is not None:
            worker = next((w for w in await client.workers() if w.id == job.worker_id), None)
        timeline: list[tuple[str, Any]] = [
            (label, when)
            for label, when in (
                ("created", job.created_at),
                ("due", job.run_at),
                ("started", job.started_at),
                (job.state.value if job.state.finished else "finished", job.finished_at),
            )
            if when is not None
        ]
        timeline += [(f"attempt {e.get('attempt')} failed", e.get("at")) for e in job.errors]
        timeline.sort(key=lambda item: str(item[1]))
        return "job.html", {
            "job": job,
            "parents": parents,
            "children": children,
            "worker": worker,
            "timeline": timeline,
            "actions": _JOB_ACTIONS,
        }

    async def workers(self, request: Request, client: Client) -> tuple[str, dict[str, Any]]:
        return "workers.html", {"workers": await client.workers()}

    async def queues(self, request: Request, client: Client) -> tuple[str, dict[str, Any]]:
        return "queues.html", {"queues": await client.queues()}

    async def schedules(self, request: Request, client: Client) -> tuple[str, dict[str, Any]]:
        return "schedules.html", {"schedules": await client.schedules.list()}

    # -- live -----------------------------------------------------------------------

    async def stream(self, request: Request) -> Response:
        from starlette.responses import StreamingResponse

        await self._access(request)
        await self.client()
        assert self.events is not None
        job_id = request.query_params.get("job")
        watched = int(job_id) if job_id is not None and job_id.isdigit() else None
        if watched is not None and watched >= 2**63:
            watched = None
        return StreamingResponse(
            self.events.stream(self._dsn, watched),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    # -- actions --------------------------------------------------------------------

    async def job_action(
        self, request: Request, client: Client, access: Access, form: dict[str, Any]
    ) -> str:
        action = request.path_params["action"]
        job_id = request.path_params["job_id"]
        if action not in _JOB_ACTIONS:
            raise HTTPException(404, f"no job action {action!r}")
        if not access.allows(action):
            raise PermissionError(f"{access.user} may not {action} jobs")
        await _apply(client, action, job_id)
        return f"{action} job {job_id}"

    async def bulk(
        self, request: Request, client: Client, access: Access, form: dict[str, Any]
    ) -> str:
        action = _one(form, "action") or ""
        if action not in _JOB_ACTIONS:
            raise BadFilter(f"bad bulk action {action!r}: use one of {', '.join(_JOB_ACTIONS)}")
        if not access.allows(action):
            raise PermissionError(f"{access.user} may not {action} jobs")
        if _one(form, "scope") == "filter":
            chosen = JobFilter.parse({k: _one(form, k) for k in form})
            expected = _one(form, "confirm")
            if expected is None or not expected.isdigit():
                raise BadFilter("a bulk action on a filter needs confirm=<the count shown>")
            # The stretch of ids the page searched, when it said so: the jobs it counted.
            rows = await client.pool.fetch(
                self.sql.matching_ids,
                *chosen.values(),
                _bound(_one(form, "before"), "before"),
                _bound(_one(form, "after"), "after"),
                BULK_LIMIT,
            )
            ids = [row["id"] for row in rows]
        else:
            raw = form.get("ids", [])
            try:
                ids = [int(i) for i in raw]
            except ValueError:
                raise BadFilter("bad ids: job ids are whole numbers") from None
            if not ids:
                raise BadFilter("no jobs selected")
        done = 0
        for job_id in ids:
            with contextlib.suppress(JobNotFound):
                await _apply(client, action, job_id)
                done += 1
        return f"{action} {done} job{'s' if done != 1 else ''}"

    async def stop_all(
        self, request: Request, client: Client, access: Access, form: dict[str, Any]
    ) -> str:
        stopped = await client.stop_workers(_grace(form))
        return f"asked {stopped} worker{'s' if stopped != 1 else ''} to stop"

    async def stop_one(
        self, request: Request, client: Client, access: Access, form: dict[str, Any]
    ) -> str:
        worker_id = request.path_params["worker_id"]
        if not await client.stop_worker(worker_id, _grace(form)):
            raise ConfigurationError(f"no running worker {worker_id} (or it is stopping)")
        return f"asked worker {worker_id} to stop"

    async def queue_action(
        self, request: Request, client: Client, access: Access, form: dict[str, Any]
    ) -> str:
        name, action = request.path_params["name"], request.path_params["action"]
        if action not in ("pause", "resume"):
            raise HTTPException(404, f"no queue action {action!r}")
        if not access.allows(f"{action}_queue"):
            raise PermissionError(f"{access.user} may not {action} queues")
        if action == "pause":
            await client.pause_queue(name)
        else:
            await client.resume_queue(name)
        return f"{action} queue {name}"

    async def schedule_action(
        self, request: Request, client: Client, access: Access, form: dict[str, Any]
    ) -> str:
        name, action = request.path_params["name"], request.path_params["action"]
        if action not in ("pause", "resume", "trigger"):
            raise HTTPException(404, f"no schedule action {action!r}")
        if not access.allows(f"{action}_schedule"):
            raise PermissionError(f"{access.user} may not {action} schedules")
        if action == "pause":
            await client.schedules.pause(name)
        elif action == "resume":
            await client.schedules.resume(name)
        else:
            job_id = await client.schedules.trigger(name)
            return f"trigger schedule {name} (job {job_id})"
        return f"{action} schedule {name}"


async def _apply(client: Client, action: str, job_id: int) -> None:
    if action == "cancel":
        await client.cancel(job_id)
    elif action == "requeue":
        await client.requeue(job_id)
    elif action == "retry":
        await client.requeue(job_id, keep_checkpoint=True)
    else:
        await client.delete(job_id)


def _bound(text: str | None, name: str) -> int | None:
    """A job id bounding a search (`before`, `after`), or None."""
    if text is None or text == "":
        return None
    if not text.isdigit() or int(text) >= 2**63:
        raise BadFilter(f"bad {name} {text!r}: a job id")
    return int(text)


def _grace(form: dict[str, Any]) -> float:
    text = _one(form, "grace") or "0"
    try:
        return float(text)
    except ValueError:
        raise BadFilter(f"bad grace {text!r}: seconds") from None


async def _form(request: Request) -> dict[str, list[str]]:
    # Parsed here: forms are small and url-encoded, and python-multipart is not needed.
    body = (await request.body()).decode("utf-8", "replace")
    return urllib.parse.parse_qs(body, keep_blank_values=True)


def _one(form: dict[str, Any], name: str) -> str | None:
    values = form.get(name)
    return values[-1] if values else None


def _answer(request: Request, form: dict[str, Any], message: str, status: int) -> Response:
    """JSON for the page's script; for a plain form, back where it came from."""
    if request.headers.get("x-requested-with") == "fetch":
        return JSONResponse({"ok": status == 200, "message": message}, status_code=status)
    if status != 200:
        return HTMLResponse(f"<p>{_escape(message)}</p>", status_code=status)
    back = _one(form, "next") or "/"
    if not back.startswith("/") or back.startswith("//"):
        back = "/"
    root = request.scope.get("root_path", "")
    sep = "&" if "?" in back else "?"
    return RedirectResponse(
        f"{root}{back}{sep}{urllib.parse.urlencode({'flash': message})}", status_code=303
    )


def _escape(text: str) -> str:
    from html import escape

    return escape(text)


def _ago(value: datetime.datetime | None) -> str:
    if value is None:
        return "-"
    seconds = (datetime.datetime.now(datetime.UTC) - value).total_seconds()
    future = seconds < 0
    seconds = abs(seconds)
    if seconds < 60:
        text = f"{seconds:.0f}s"
    elif seconds < 3600:
        text = f"{seconds / 60:.0f}m"
    elif seconds < 86400:
        text = f"{seconds / 3600:.1f}h"
    else:
        text = f"{seconds / 86400:.1f}d"
    return f"in {text}" if future else f"{text} ago"


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    return f"{value:.1f} s"


def _pretty(value: Any) -> str:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    return orjson.dumps(value, default=str, option=orjson.OPT_INDENT_2).decode()
