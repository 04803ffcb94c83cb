"""Enqueue in your own asyncpg transaction: the job exists, and workers hear of it, only if
your transaction commits.

    python -m examples.enqueue_asyncpg           # $ASYNCJOBS_DSN, else the embedded server
    asyncjobs worker examples.tasks:app          # runs the job that was committed
"""

from __future__ import annotations

import anyio
import asyncpg

import asyncjobs
from examples.tasks import add, app


async def main() -> None:
    async with app.database() as dsn, app.client() as client:
        conn = await asyncpg.connect(dsn)
        try:
            async with conn.transaction():
                await conn.execute("CREATE TEMP TABLE orders (id int)")
                await conn.execute("INSERT INTO orders (id) VALUES (1)")
                job_id = await client.enqueue_tx(conn, add, 1, 2)
            print(f"committed: job {job_id} is {(await client.get(job_id)).state.value}")

            try:
                async with conn.transaction():
                    dropped = await client.enqueue_tx(conn, add, 3, 4)
                    raise RuntimeError("the order failed")
            except RuntimeError:
                pass
            try:
                await client.get(dropped)
            except asyncjobs.JobNotFound:
                print(f"rolled back: job {dropped} was never stored")
        finally:
            await conn.close()


if __name__ == "__main__":
    anyio.run(main)
