"""Enqueue in your own psycopg 3 transaction, async or sync: the job exists, and workers
hear of it, only if your transaction commits.

    pip install 'asyncjobs[psycopg]'
    python -m examples.enqueue_psycopg           # $ASYNCJOBS_DSN, else the embedded server
    asyncjobs worker examples.tasks:app          # runs the jobs that were committed

Sync code (a Flask view, a script) has no event loop: it uses `app.sync_client()`, whose
`enqueue_tx` runs on your connection in your thread.
"""

from __future__ import annotations

import anyio
import psycopg

from examples.tasks import add, app


async def with_async_psycopg(dsn: str) -> None:
    async with app.client() as client, await psycopg.AsyncConnection.connect(dsn) as conn:
        async with conn.transaction():
            await conn.execute("CREATE TEMP TABLE orders (id int)")
            await conn.execute("INSERT INTO orders (id) VALUES (1)")
            job_id = await client.enqueue_tx(conn, add, 1, 2)
        print(f"async psycopg, committed: job {job_id}")


def with_sync_psycopg(dsn: str) -> None:
    with app.sync_client() as jobs, psycopg.connect(dsn) as conn:
        with conn.transaction():
            conn.execute("CREATE TEMP TABLE orders (id int)")
            conn.execute("INSERT INTO orders (id) VALUES (2)")
            job_id = jobs.enqueue_tx(conn, add, 3, 4)
        print(f"sync psycopg, committed: job {job_id} is {jobs.get(job_id).state.value}")


async def main() -> None:
    async with app.database() as dsn:
        await with_async_psycopg(dsn)
        await anyio.to_thread.run_sync(with_sync_psycopg, dsn)


if __name__ == "__main__":
    anyio.run(main)
