"""The dashboard's HTTP layer through httpx's ASGI transport, on a real database: every page
answers, non-local clients are refused without an auth callable, the resolver's read-only
and per-action answers hold, CSRF is refused, bad filters get a clear 400, actions are
logged with who made them."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.requests import Request

import asyncjobs
from asyncjobs.dashboard import Access, Dashboard


@pytest.fixture
async def board(app: asyncjobs.App) -> AsyncIterator[Dashboard]:
    async with app.dashboard() as dashboard:
        yield dashboard


def browser(dashboard: Dashboard, host: str = "127.0.0.1", root: str = "") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=dashboard, client=(host, 40000), root_path=root)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def token(http: httpx.AsyncClient, page: str = "/jobs") -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', (await http.get(page)).text)
    assert found, "no form on the page"
    return found[1]


async def test_every_page_answers(client: asyncjobs.Client, board: Dashboard) -> None:
    from tests.worker_app import quick

    job_id = await client.enqueue(quick, 1)
    await client.pause_queue("default")
    async with browser(board) as http:
        for page, seen in [
            ("/", "Throughput"),
            ("/jobs", f"/jobs/{job_id}"),
            (f"/jobs/{job_id}", "Arguments"),
            ("/workers", "Stop all workers"),
            ("/queues", "paused"),
            ("/schedules", "Schedules"),
            ("/jobs?state=queued&queue=default&args=[1]", f"/jobs/{job_id}"),
        ]:
            response = await http.get(page)
            assert response.status_code == 200, (page, response.text)
            assert seen in response.text, page
        assert (await http.get("/jobs/999999")).status_code == 404


async def test_keyset_pagination(client: asyncjobs.Client, board: Dashboard) -> None:
    from tests.worker_app import quick

    ids = await client.enqueue_many(quick.call(i) for i in range(60))
    async with browser(board) as http:
        first = (await http.get("/jobs")).text
        assert f"/jobs/{ids[-1]}" in first and f'/jobs/{ids[0]}"' not in first
        older = re.search(r'href="(/jobs\?[^"]*before=\d+)"', first)
        assert older
        second = (await http.get(older[1].replace("&amp;", "&"))).text
        assert f'/jobs/{ids[0]}"' in second and f'/jobs/{ids[-1]}"' not in second


async def test_non_local_clients_are_refused_without_an_auth_callable(board: Dashboard) -> None:
    async with browser(board, host="203.0.113.7") as http:
        response = await http.get("/")
        assert response.status_code == 403
        assert "local clients only" in response.text
        assert (await http.get("/events")).status_code == 403


async def test_the_resolver_decides_per_request(
    app: asyncjobs.App, client: asyncjobs.Client
) -> None:
    from tests.worker_app import quick

    def auth(request: Request) -> Access | None:
        user = request.headers.get("x-user")
        if user == "admin":
            return Access.full("admin")
        if user == "ops":
            return Access.only("ops", ["pause_queue", "resume_queue"])
        if user == "viewer":
            return Access.read_only("viewer")
        return None

    job_id = await client.enqueue(quick, 1)
    async with app.dashboard(auth=auth) as dashboard, browser(dashboard, "203.0.113.7") as http:
        assert (await http.get("/")).status_code == 403  # no user
        http.headers["x-user"] = "viewer"
        assert (await http.get("/")).status_code == 200
        page = (await http.get(f"/jobs/{job_id}")).text
        assert "/cancel" not in page and "read-only" in page
        http.headers["x-user"] = "admin"
        csrf = await token(http, f"/jobs/{job_id}")
        http.headers["x-user"] = "viewer"
        refused = await http.post(f"/jobs/{job_id}/cancel", data={"csrf": csrf})
        assert refused.status_code == 403
        assert (await client.get(job_id)).state is asyncjobs.JobState.QUEUED
        http.headers["x-user"] = "ops"
        assert (await http.post(f"/jobs/{job_id}/cancel", data={"csrf": csrf})).status_code == 403
        done = await http.post("/queues/default/pause", data={"csrf": csrf, "next": "/queues"})
        assert done.status_code == 303
        assert [q.paused for q in await client.queues() if q.name == "default"] == [True]
        http.headers["x-user"] = "admin"
        done = await http.post(
            f"/jobs/{job_id}/cancel", data={"csrf": csrf}, headers={"x-requested-with": "fetch"}
        )
        assert done.status_code == 200 and done.json() == {
            "ok": True,
            "message": f"cancel job {job_id}",
        }
        assert (await client.get(job_id)).state is asyncjobs.JobState.CANCELLED


async def test_read_only_refuses_every_action(app: asyncjobs.App, client: asyncjobs.Client) -> None:
    from tests.worker_app import quick

    job_id = await client.enqueue(quick, 1)
    async with app.dashboard() as full, browser(full) as http:
        csrf = await token(http)
    async with app.dashboard(read_only=True) as dashboard, browser(dashboard) as http:
        http.cookies.set("asyncjobs_csrf", csrf)
        for url in [f"/jobs/{job_id}/delete", "/workers/stop", "/queues/default/pause"]:
            response = await http.post(url, data={"csrf": csrf})
            assert response.status_code == 403, url
    assert (await client.get(job_id)).state is asyncjobs.JobState.QUEUED
    assert not [q for q in await client.queues() if q.paused]


async def test_cross_site_requests_are_refused(client: asyncjobs.Client, board: Dashboard) -> None:
    from tests.worker_app import quick

    job_id = await client.enqueue(quick, 1)
    async with browser(board) as http:
        csrf = await token(http)
        # No token, a wrong token, the right token from another origin.
        assert (await http.post(f"/jobs/{job_id}/cancel")).status_code == 403
        wrong = await http.post(f"/jobs/{job_id}/cancel", data={"csrf": "x" * 43})
        assert wrong.status_code == 403 and "CSRF" in wrong.text
        other = await http.post(
            f"/jobs/{job_id}/cancel",
            data={"csrf": csrf},
            headers={"origin": "https://evil.example"},
        )
        assert other.status_code == 403 and "cross-site" in other.text
    # A fresh browser (no cookie) with a token it read elsewhere.
    async with browser(board) as http:
        assert (await http.post(f"/jobs/{job_id}/cancel", data={"csrf": csrf})).status_code == 403
    assert (await client.get(job_id)).state is asyncjobs.JobState.QUEUED


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("state=done", "bad state filter"),
        ("id=abc", "bad id filter"),
        ("id=99999999999999999999", "bad id filter"),
        ("args={not json", "bad args filter: not JSON"),
        ("args=3", "give a JSON array"),
        ("queue=has space", "bad queue filter"),
        ("before=x", "bad before"),
    ],
)
async def test_bad_filters_get_a_clear_400(board: Dashboard, query: str, says: str) -> None:
    async with browser(board) as http:
        response = await http.get(f"/jobs?{query}")
        assert response.status_code == 400
        assert says in response.text


async def test_bulk_actions_on_a_selection_and_on_a_filter(
    client: asyncjobs.Client, board: Dashboard, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.worker_app import quick, sleep

    picked = await client.enqueue_many(quick.call(i) for i in range(3))
    sleepy = await client.enqueue_many(sleep.call(9) for _ in range(4))
    fetch = {"x-requested-with": "fetch"}
    caplog.set_level(logging.INFO, "asyncjobs.dashboard")
    async with browser(board) as http:
        csrf = await token(http)
        done = await http.post(
            "/jobs/bulk",
            data={"csrf": csrf, "action": "cancel", "ids": [str(i) for i in picked[:2]]},
            headers=fetch,
        )
        assert done.json()["message"] == "cancel 2 jobs"
        # On a filter: refused without the confirmation, then done for all it matches.
        form = {"csrf": csrf, "action": "delete", "scope": "filter", "task": "sleep"}
        assert (await http.post("/jobs/bulk", data=form, headers=fetch)).status_code == 400
        done = await http.post("/jobs/bulk", data={**form, "confirm": "4"}, headers=fetch)
        assert done.json()["message"] == "delete 4 jobs"
        bad = await http.post(
            "/jobs/bulk", data={**form, "args": "{", "confirm": "4"}, headers=fetch
        )
        assert bad.status_code == 400 and "not JSON" in bad.json()["message"]
    states = [(await client.get(i)).state.value for i in picked]
    assert states == ["cancelled", "cancelled", "queued"]
    for job_id in sleepy:
        with pytest.raises(asyncjobs.JobNotFound):
            await client.get(job_id)
    assert "local: cancel 2 jobs" in caplog.text and "local: delete 4 jobs" in caplog.text


async def test_a_bulk_action_on_more_than_the_count_shows_says_how_many_it_takes(
    client: asyncjobs.Client, board: Dashboard
) -> None:
    from asyncjobs.dashboard.app import BULK_LIMIT
    from asyncjobs.dashboard.store import COUNT_CAP
    from tests.worker_app import quick

    await client.enqueue_many(quick.call(i) for i in range(COUNT_CAP + 5))
    async with browser(board) as http:
        page = (await http.get("/jobs?task=quick")).text
    assert f"up to {BULK_LIMIT:,} of the more than {COUNT_CAP} jobs matching" in page


async def test_redact_hides_arguments_and_results(
    app: asyncjobs.App, client: asyncjobs.Client
) -> None:
    import dataclasses

    from tests.worker_app import quick

    job_id = await client.enqueue(quick, 424242)

    def redact(job: asyncjobs.Job) -> asyncjobs.Job:
        return dataclasses.replace(job, args=["***"], result=None)

    async with app.dashboard(redact=redact) as dashboard, browser(dashboard) as http:
        page = (await http.get(f"/jobs/{job_id}")).text
    assert "424242" not in page and "***" in page


async def test_mounted_under_a_path_in_fastapi(
    app: asyncjobs.App, client: asyncjobs.Client
) -> None:
    from fastapi import FastAPI

    api = FastAPI()
    async with app.dashboard() as dashboard:
        api.mount("/jobs-admin", dashboard)
        transport = httpx.ASGITransport(app=api, client=("127.0.0.1", 1))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            page = await http.get("/jobs-admin/queues")
            assert page.status_code == 200
            assert 'href="/jobs-admin/jobs"' in page.text
            css = await http.get("/jobs-admin/static/dashboard.css")
            assert css.status_code == 200


async def test_the_dashboard_command_serves_it_read_only_on_localhost(
    env: dict[str, str], client: asyncjobs.Client
) -> None:
    import socket
    import subprocess
    import sys

    import anyio

    from tests.helpers import ROOT

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "asyncjobs", "dashboard", "--port", str(port), "--read-only"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            with anyio.fail_after(20):
                while True:
                    try:
                        page = await http.get("/queues")
                        break
                    except httpx.ConnectError:
                        await anyio.sleep(0.1)
            assert page.status_code == 200 and "read-only" in page.text
            assert 'name="csrf"' not in page.text  # no action offered
    finally:
        proc.terminate()
        proc.wait(10)


async def test_a_filter_without_an_index_searches_a_stretch_and_says_so(
    client: asyncjobs.Client, board: Dashboard, monkeypatch: pytest.MonkeyPatch
) -> None:
    # State, task and queue have no index: each page reads at most SCAN_WINDOW of the
    # newest ids, says which it searched, and offers the next stretch. A unique key (or an
    # id, or arguments) is found by index in the whole table.
    from asyncjobs.dashboard import app as dashboard_app
    from tests.worker_app import quick, sleep

    monkeypatch.setattr(dashboard_app, "SCAN_WINDOW", 20)
    old = await client.enqueue(sleep.options(unique_key="the-old-one"), 1)
    recent = await client.enqueue_many(quick.call(i) for i in range(50))
    fetch = {"x-requested-with": "fetch"}
    async with browser(board) as http:
        page = (await http.get("/jobs?task=sleep")).text
        assert f"/jobs/{old}" not in page
        assert f"among jobs {recent[-20]}–{recent[-1]}" in page and 'id="partial"' in page
        hops = 0
        while f'/jobs/{old}"' not in page:
            link = re.search(r'href="(/jobs\?[^"]*)" id="search-older"', page)
            assert link, page
            page = (await http.get(link[1].replace("&amp;", "&"))).text
            hops += 1
        assert hops == 2  # 51 ids: the third stretch of 20 reaches it
        page = (await http.get("/jobs?unique_key=the-old-one")).text
        assert f'/jobs/{old}"' in page and 'id="partial"' not in page
        # A bulk action on such a filter acts on the jobs counted: those of the stretch.
        page = (await http.get("/jobs?task=quick")).text
        assert '<span id="matching">20</span>' in page
        after = re.search(r'name="after" value="(\d+)"', page)
        before = re.search(r'name="before" value="(\d+)"', page)
        assert after and before
        form = {
            "csrf": await token(http),
            "action": "delete",
            "scope": "filter",
            "task": "quick",
            "confirm": "20",
            "after": after[1],
            "before": before[1],
        }
        done = await http.post("/jobs/bulk", data=form, headers=fetch)
        assert done.json()["message"] == "delete 20 jobs"
    for job_id in recent[-20:]:
        with pytest.raises(asyncjobs.JobNotFound):
            await client.get(job_id)
    assert (await client.get(recent[-21])).state is asyncjobs.JobState.QUEUED
