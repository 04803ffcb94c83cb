"""Example tasks. Run a worker for them, and enqueue from another shell:

    asyncjobs worker examples.tasks:app --concurrency 10
    asyncjobs enqueue examples.tasks.add '[1, 2]' --project examples
    asyncjobs enqueue examples.tasks.send_welcome_email '["ada@example.com"]' \\
        --kwargs '{"name": "Ada"}' --app examples.tasks:app
    asyncjobs jobs list --project examples
    asyncjobs schedules list --project examples  # purge_thumbnails, declared below

(`--app` gives the job its task's options, here queue `emails` and 5 attempts, and checks
the arguments against the function; without it, pass `--queue emails` yourself.)

or from Python:

    async with app.client() as client:
        job_id = await client.enqueue(send_welcome_email, "ada@example.com", name="Ada")
        print(await client.wait(job_id, timeout=10))

The worker serves the queues these tasks use (`default` and `emails`). Without
$ASYNCJOBS_DSN, asyncjobs starts an embedded PostgreSQL, where this app's jobs live in a
database of their own, `examples` (its name; `--project examples` for the commands that
don't load the app); set $ASYNCJOBS_DSN to use your own server.
"""

from __future__ import annotations

import hashlib

import anyio

import asyncjobs

app = asyncjobs.App(name="examples")  # its database on the embedded PostgreSQL


@app.task
async def add(a: int, b: int) -> int:
    """The smallest task: an async function; its return value is the job's result."""
    return a + b


@app.task(queue="emails", max_attempts=5, timeout=30, retry=asyncjobs.Backoff(base=2))
async def send_welcome_email(to: str, *, name: str) -> str:
    """An async task on its own queue: retried with backoff (2 s, 4 s, ...) if it raises,
    interrupted (and counted as a failed attempt) after 30 s."""
    await anyio.sleep(0.1)  # stands in for the mail server's round trip
    return f"welcome mail sent to {name} <{to}>"


@app.task(timeout=120)
def make_thumbnails(token: asyncjobs.CancelToken, path: str, sizes: list[int]) -> list[str]:
    """A sync task runs in a worker thread. It takes its CancelToken first: cancel, requeue,
    delete, a timeout or a worker shutdown set it at once, and the loop stops at its next
    check (`token.wait(s)` is an interruptible sleep)."""
    made = []
    for size in sizes:
        token.raise_if_cancelled()
        digest = hashlib.sha256(f"{path}:{size}".encode()).hexdigest()[:12]
        made.append(f"{path}.{size}px.{digest}.png")
        token.wait(0.2)  # stands in for the work on one size
    token.raise_if_cancelled()
    return made


@app.periodic("0 3 * * *", timezone="Europe/Paris", kwargs={"older_than_days": 30})
@app.task
async def purge_thumbnails(older_than_days: int) -> int:
    """A recurring job: every day at 03:00 Paris time, one job, however many workers run.
    A worker stores this schedule when it starts; `asyncjobs schedules list` shows it."""
    await anyio.sleep(0.05)  # stands in for deleting old files
    return older_than_days
