"""The dashboard in a real browser (Playwright driving Debian's Chromium) against real worker
processes: every page opens (and is photographed for the README), a cancel clicked on a
running job interrupts it in its worker and the page changes without a reload, stop-all
stops the workers, a queue paused from the page starts nothing."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
import uvicorn

import asyncjobs
from tests.helpers import ROOT, Spawn, read_marks, until, workers_up

playwright_api = pytest.importorskip("playwright.async_api")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="no chromium installed")
# The README's screenshots, refreshed with ASYNCJOBS_SCREENSHOTS=1; else a run of the suite
# would rewrite tracked files.
SHOTS = (
    ROOT / "docs" / "dashboard"
    if os.environ.get("ASYNCJOBS_SCREENSHOTS") == "1"
    else Path(tempfile.gettempdir()) / "asyncjobs-dashboard-shots"
)


@pytest.fixture
async def base_url(app: asyncjobs.App, client: asyncjobs.Client) -> AsyncIterator[str]:
    """The dashboard served by uvicorn on a free local port, in this event loop."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with app.dashboard() as dashboard:
        server = uvicorn.Server(
            uvicorn.Config(
                dashboard, host="127.0.0.1", port=port, log_level="warning", lifespan="off"
            )
        )
        # A plain task, not a task group: the fixture's setup and teardown run in
        # different tasks.
        serving = asyncio.ensure_future(server.serve())
        with anyio.fail_after(10):
            while not server.started:
                await anyio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
        server.should_exit = True
        server.force_exit = True
        await serving


@pytest.fixture
async def page(base_url: str) -> AsyncIterator[playwright_api.Page]:
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = await browser.new_page(viewport={"width": 1200, "height": 800})
            page.on("dialog", lambda dialog: dialog.accept())
            yield page
        finally:
            await browser.close()


async def _no_reload_marker(page: playwright_api.Page) -> None:
    await page.evaluate("window.__sameDocument = 'yes'")


async def _same_document(page: playwright_api.Page) -> bool:
    return bool(await page.evaluate("window.__sameDocument === 'yes'"))


async def _live(page: playwright_api.Page) -> None:
    """Until the page's event stream is open."""
    await page.wait_for_selector("#live.on", timeout=10_000)


async def test_every_page_opens_with_live_data_and_is_photographed(
    client: asyncjobs.Client, spawn_worker: Spawn, page: playwright_api.Page, base_url: str
) -> None:
    from tests.worker_app import big_error, progressing, quick, sleep

    spawn_worker("--queues", "default,emails", "--concurrency", "4")
    await workers_up(client, 1)
    done = await client.enqueue_many(quick.call(i) for i in range(20))
    failed = await client.enqueue(big_error, 40)
    for job_id in [*done, failed]:
        await until(client, job_id, lambda j: j.state.finished, 20)
    running = await client.enqueue(progressing, 400, 0.05)
    await until(client, running, lambda j: j.state.value == "processing", 20)
    await client.enqueue(sleep.options(queue="reports", delay=600), 1)
    await client.enqueue(quick.options(queue="emails", unique_key="welcome-42"), 42)
    await client.pause_queue("reports")
    await client.schedules.add(
        "nightly-report", quick, "0 3 * * *", args=[7], timezone="Europe/Paris"
    )

    SHOTS.mkdir(parents=True, exist_ok=True)
    for name, path, seen in [
        ("overview", "/", "Throughput"),
        ("jobs", "/jobs", "progressing"),
        ("workers", "/workers", "Stop all workers"),
        ("queues", "/queues", "reports"),
        ("schedules", "/schedules", "nightly-report"),
        ("job-failed", f"/jobs/{failed}", "ValueError"),
    ]:
        await page.goto(base_url + path)
        assert seen in await page.content(), name
        await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)

    # A running job's page: its progress bar and log move by push (the worker's progress
    # write notifies; the page hears a "job" change, not a timer), without a reload.
    await page.goto(f"{base_url}/jobs/{running}")
    await _live(page)
    await _no_reload_marker(page)
    first = float(await page.get_attribute("#progress", "value") or 0)
    with anyio.fail_after(15):
        while float(await page.get_attribute("#progress", "value") or 0) <= first:
            await anyio.sleep(0.1)
    assert "job" in (await page.evaluate("document.body.dataset.changed")).split(",")
    assert await page.locator("#log").count() == 1
    assert await _same_document(page)
    await page.screenshot(path=str(SHOTS / "job-running.png"), full_page=True)


async def test_cancel_clicked_on_a_running_job_interrupts_it_and_the_page_changes_in_place(
    client: asyncjobs.Client,
    spawn_worker: Spawn,
    page: playwright_api.Page,
    base_url: str,
    tmp_path: Path,
) -> None:
    from tests.worker_app import async_marked

    marks = tmp_path / "marks"
    spawn_worker("--queues", "default")
    await workers_up(client, 1)
    job_id = await client.enqueue(async_marked, str(marks), 60)
    await until(client, job_id, lambda j: j.state.value == "processing", 20)
    await page.goto(f"{base_url}/jobs/{job_id}")
    await _live(page)
    await _no_reload_marker(page)
    assert await page.inner_text("#job-state") == "processing"
    clicked = time.time()
    await page.click("form[action$='/cancel'] button")
    await page.wait_for_function(
        "document.getElementById('job-state').textContent === 'cancelled'", timeout=10_000
    )
    assert await _same_document(page)
    with anyio.fail_after(10):
        while not [m for m in read_marks(marks) if m[0] == "stop"]:
            await anyio.sleep(0.01)
    stopped_at = next(m for m in read_marks(marks) if m[0] == "stop")[3]
    assert stopped_at - clicked < 5  # interrupted in its worker, not waited out (60 s)
    assert (await client.get(job_id)).state is asyncjobs.JobState.CANCELLED


async def test_stop_all_workers_from_the_page(
    client: asyncjobs.Client, spawn_worker: Spawn, page: playwright_api.Page, base_url: str
) -> None:
    workers = [spawn_worker("--queues", "default") for _ in range(3)]
    await workers_up(client, 3)
    await page.goto(f"{base_url}/workers")
    await _live(page)
    await _no_reload_marker(page)
    assert await page.locator("tr[data-worker]").count() == 3
    await page.click("form[action$='/workers/stop'] button")  # the confirm is accepted
    with anyio.fail_after(20):
        while any(proc.poll() is None for proc in workers):
            await anyio.sleep(0.05)
    assert [proc.returncode for proc in workers] == [0, 0, 0]
    await page.wait_for_selector("#no-workers", timeout=10_000)
    assert await _same_document(page)


async def test_a_queue_paused_from_the_page_starts_nothing(
    client: asyncjobs.Client, spawn_worker: Spawn, page: playwright_api.Page, base_url: str
) -> None:
    from tests.worker_app import quick

    spawn_worker("--queues", "default", "--poll-interval", "120")
    await workers_up(client, 1)
    await page.goto(f"{base_url}/queues")
    await _live(page)
    await page.click("tr[data-queue='default'] form[action$='/pause'] button")
    await page.wait_for_function(
        "document.querySelector(\"tr[data-queue='default'] .qstate\").textContent === 'paused'",
        timeout=10_000,
    )
    ids = [await client.enqueue(quick, i) for i in range(5)]
    await anyio.sleep(1.0)
    assert {(await client.get(i)).state.value for i in ids} == {"queued"}
    await page.click("tr[data-queue='default'] form[action$='/resume'] button")
    for job_id in ids:
        await until(client, job_id, lambda j: j.state.value == "succeeded", 20)
