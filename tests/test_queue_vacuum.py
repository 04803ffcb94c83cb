"""The queue vacuum (worker/queue_vacuum.py): a worker that claimed enough rows vacuums the
queue table, whose dead rows every claim would otherwise step over; one that claimed few
leaves it to autovacuum."""

from __future__ import annotations

import anyio
import asyncpg

import asyncjobs
from asyncjobs.worker.queue_vacuum import QueueVacuum


async def _vacuums(admin: asyncpg.Connection, schema: str) -> tuple[int, int]:
    row = await admin.fetchrow(
        "SELECT vacuum_count, n_dead_tup FROM pg_stat_user_tables"
        " WHERE schemaname = $1 AND relname = 'queue'",
        schema,
    )
    assert row is not None
    return row["vacuum_count"], row["n_dead_tup"]


async def _dead_rows(app: asyncjobs.App, client: asyncjobs.Client, schema: str) -> None:
    @app.task(name="vacuum.noop")
    async def noop(i: int) -> None: ...

    await client.enqueue_many(noop.call(i) for i in range(2_000))
    # As claims leave them: deleted queue rows.
    await client.pool.execute(f'DELETE FROM "{schema}".queue')


async def test_a_worker_that_claimed_enough_vacuums_the_queue_table(
    app: asyncjobs.App, client: asyncjobs.Client, admin: asyncpg.Connection, schema: str
) -> None:
    await _dead_rows(app, client, schema)
    before, _ = await _vacuums(admin, schema)
    claimed = 0
    vacuum = QueueVacuum(client.pool, client.sql, lambda: claimed, every_rows=1_000, interval=0.05)
    async with anyio.create_task_group() as tg:
        tg.start_soon(vacuum.run)
        await anyio.sleep(0.1)  # counting from here
        claimed = 1_500
        with anyio.fail_after(10):
            while vacuum.vacuums == 0:
                await anyio.sleep(0.02)
        tg.cancel_scope.cancel()
    # The table's own vacuum count moved. Not its dead rows: those a VACUUM may not remove
    # while any transaction in the database is older than them (another test's claim, run
    # in parallel), and the DELETE's statistics may reach pg_stat after the vacuum's.
    with anyio.fail_after(10):
        while (await _vacuums(admin, schema))[0] == before:
            await anyio.sleep(0.05)


async def test_a_worker_that_claimed_little_leaves_it_to_autovacuum(
    app: asyncjobs.App, client: asyncjobs.Client, admin: asyncpg.Connection, schema: str
) -> None:
    await _dead_rows(app, client, schema)
    before, _ = await _vacuums(admin, schema)
    vacuum = QueueVacuum(client.pool, client.sql, lambda: 999, every_rows=1_000, interval=0.02)
    with anyio.move_on_after(0.3):
        await vacuum.run()
    assert vacuum.vacuums == 0 and (await _vacuums(admin, schema))[0] == before
