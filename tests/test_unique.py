"""Unique jobs: one active job per task and key, enforced by PostgreSQL, also under many
concurrent enqueues from many connections."""

from __future__ import annotations

import anyio
import asyncpg
import pytest

import asyncjobs


async def test_second_enqueue_returns_the_active_job(
    app: asyncjobs.App, client: asyncjobs.Client
) -> None:
    @app.task
    async def sync_user(user_id: int) -> int:
        return user_id

    keyed = sync_user.options(unique_key="user:42")
    first = await client.enqueue(keyed, 42)
    assert await client.enqueue(keyed, 42) == first
    # Another key, or no key, is another job; so is the same key on another task.
    assert await client.enqueue(sync_user.options(unique_key="user:43"), 43) != first
    assert await client.enqueue(sync_user, 42) != first

    @app.task
    async def other(user_id: int) -> None: ...

    assert await client.enqueue(other.options(unique_key="user:42"), 42) != first
    job = await client.get(first)
    assert job.unique_key == "user:42" and job.state is asyncjobs.JobState.QUEUED

    # Once it finished, the key is free again: a new job is enqueued.
    async with app.worker():
        assert await client.wait(first, timeout=10) == 42
    second = await client.enqueue(keyed, 42)
    assert second != first
    assert (await client.get(second)).state is asyncjobs.JobState.QUEUED


async def test_the_key_is_held_while_scheduled_and_processing_and_freed_by_cancel(
    app: asyncjobs.App, client: asyncjobs.Client
) -> None:
    started = anyio.Event()

    @app.task
    async def slow() -> None:
        started.set()
        await anyio.sleep(30)

    scheduled = await client.enqueue(slow.options(unique_key="s", delay=3600))
    assert await client.enqueue(slow.options(unique_key="s")) == scheduled
    await client.cancel(scheduled)
    running = await client.enqueue(slow.options(unique_key="s"))
    assert running != scheduled
    async with app.worker():
        with anyio.fail_after(10):
            await started.wait()
        assert (await client.get(running)).state is asyncjobs.JobState.PROCESSING
        assert await client.enqueue(slow.options(unique_key="s")) == running
        await client.cancel(running)
    assert await client.enqueue(slow.options(unique_key="s")) not in (scheduled, running)


async def test_every_way_a_job_ends_frees_its_key_and_a_retry_keeps_it(
    app: asyncjobs.App, client: asyncjobs.Client, admin: asyncpg.Connection, schema: str
) -> None:
    # The key is held through active_key, which each statement that changes a job's state
    # sets (a constraint checks that it did): every ending must let the key go.
    tries: dict[str, int] = {}

    @app.task(max_attempts=2, retry=asyncjobs.Backoff(base=0.2, jitter=False))
    async def work(how: str) -> str:
        tries[how] = tries.get(how, 0) + 1
        if how == "fail" or (how == "retry" and tries[how] == 1):
            raise ValueError(how)
        if how == "cancel":
            raise asyncjobs.Cancel("not needed")
        return how

    ends = ["ok", "fail", "cancel", "retry"]
    ids = {how: await client.enqueue(work.options(unique_key=how), how) for how in ends}
    parent = await client.enqueue(work, "fail")
    child = await client.enqueue(work.options(unique_key="child", after=parent), "ok")
    async with app.worker():
        with anyio.fail_after(10):
            while tries.get("retry") != 1:
                await anyio.sleep(0.01)
        # Waiting for its next attempt, the retried job still holds its key.
        assert await client.enqueue(work.options(unique_key="retry"), "retry") == ids["retry"]
        assert await client.wait(ids["ok"], timeout=10) == "ok"
        assert await client.wait(ids["retry"], timeout=10) == "retry"
        with pytest.raises(asyncjobs.JobFailed):
            await client.wait(ids["fail"], timeout=10)
        for cancelled in (ids["cancel"], child):  # by itself; for its failed parent
            with pytest.raises(asyncjobs.JobCancelled):
                await client.wait(cancelled, timeout=10)
    for how, job_id in [*ids.items(), ("child", child)]:
        again = await client.enqueue(work.options(unique_key=how), how)
        assert again != job_id, how
    keys = await admin.fetch(
        f'SELECT unique_key FROM "{schema}".jobs WHERE active_key IS NOT NULL ORDER BY id'
    )
    assert sorted(r["unique_key"] for r in keys) == sorted([*ends, "child"])


async def test_on_duplicate_raise_names_the_job_and_stores_nothing(
    app: asyncjobs.App, client: asyncjobs.Client
) -> None:
    @app.task
    async def report(day: str) -> None: ...

    first = await client.enqueue(report.options(unique_key="2026-01-01"), "2026-01-01")
    with pytest.raises(asyncjobs.DuplicateJob, match="unique key '2026-01-01'") as raised:
        await client.enqueue(
            report.options(unique_key="2026-01-01", on_duplicate="raise"), "2026-01-01"
        )
    assert raised.value.job_id == first
    assert f"job {first}, queued" in str(raised.value)
    # A batch with one refused duplicate stores none of its jobs.
    before = len(await client.list_jobs())
    with pytest.raises(asyncjobs.DuplicateJob):
        await client.enqueue_many(
            [
                report.call("2026-01-02"),
                report.options(unique_key="2026-01-01", on_duplicate="raise").call("x"),
            ]
        )
    assert len(await client.list_jobs()) == before


async def test_duplicates_within_one_batch_become_one_job(
    app: asyncjobs.App, client: asyncjobs.Client
) -> None:
    @app.task
    async def touch(n: int) -> None: ...

    calls = [touch.options(unique_key=f"k{n % 3}").call(n) for n in range(9)]
    calls.append(touch.call(99))
    ids = await client.enqueue_many(calls)
    assert len(ids) == 10
    assert ids[0:3] == ids[3:6] == ids[6:9]
    assert len(set(ids)) == 4
    # The job is the first call's: its arguments, not a later duplicate's.
    assert (await client.get(ids[1])).args == [1]
    again = await client.enqueue_many([touch.options(unique_key="k2").call(5), touch.call(1)])
    assert again[0] == ids[2] and again[1] not in ids
    with pytest.raises(asyncjobs.DuplicateJob):
        await client.enqueue_many(
            [
                touch.options(unique_key="new").call(1),
                touch.options(unique_key="new", on_duplicate="raise").call(2),
            ]
        )


async def test_enqueue_tx_respects_the_key_and_rolls_back(
    app: asyncjobs.App, client: asyncjobs.Client, pg_dsn: str
) -> None:
    @app.task
    async def once() -> None: ...

    conn = await asyncpg.connect(pg_dsn)
    try:
        with pytest.raises(RuntimeError):
            async with conn.transaction():
                await client.enqueue_tx(conn, once.options(unique_key="tx"))
                raise RuntimeError("rolled back")
        kept = await client.enqueue(once.options(unique_key="tx"))
        async with conn.transaction():
            assert await client.enqueue_tx(conn, once.options(unique_key="tx")) == kept
    finally:
        await conn.close()


async def test_concurrent_enqueues_of_one_key_make_exactly_one_job(
    app: asyncjobs.App, client: asyncjobs.Client, pg_dsn: str, schema: str
) -> None:
    """Many connections enqueue the same key at once, each in a transaction that stays open
    a moment after its insert, so that the others' statements conflict with a row committed
    after their snapshot: every caller must still get that job's id."""

    @app.task
    async def rebuild(n: int) -> None: ...

    conns = [await asyncpg.connect(pg_dsn) for _ in range(20)]
    results: list[int] = []
    go = anyio.Event()

    async def enqueue_from(conn: asyncpg.Connection, n: int) -> None:
        await go.wait()
        async with conn.transaction():
            results.append(await client.enqueue_tx(conn, rebuild.options(unique_key="index"), n))
            await anyio.sleep(0.05)

    async def enqueue_plain(n: int) -> None:
        await go.wait()
        results.append(await client.enqueue(rebuild.options(unique_key="index"), n))

    try:
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for n, conn in enumerate(conns):
                    tg.start_soon(enqueue_from, conn, n)
                for n in range(3):
                    tg.start_soon(enqueue_plain, 100 + n)
                await anyio.sleep(0.1)
                go.set()
    finally:
        for conn in conns:
            await conn.close()
    assert len(results) == 23
    assert len(set(results)) == 1
    admin = await asyncpg.connect(pg_dsn)
    try:
        count = await admin.fetchval(
            f'SELECT count(*) FROM "{schema}".jobs WHERE unique_key = $1', "index"
        )
        queue_rows = await admin.fetchval(f'SELECT count(*) FROM "{schema}".queue')
    finally:
        await admin.close()
    assert count == 1 and queue_rows == 1


async def test_requeue_respects_an_active_key(app: asyncjobs.App, client: asyncjobs.Client) -> None:
    @app.task
    async def job() -> None: ...

    old = await client.enqueue(job.options(unique_key="r"))
    await client.cancel(old)
    new = await client.enqueue(job.options(unique_key="r"))
    with pytest.raises(asyncjobs.DuplicateJob) as raised:
        await client.requeue(old)
    assert raised.value.job_id == new
    assert (await client.get(old)).state is asyncjobs.JobState.CANCELLED


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"unique_key": ""}, "invalid unique_key '': it is empty"),
        ({"unique_key": "x" * 600}, "at most 512"),
        ({"on_duplicate": "ignore"}, "on_duplicate must be 'existing'"),
        ({"after": "12"}, "after must be a job id"),
        ({"after": []}, "at least one job id"),
        ({"after": [1.5]}, "after must be job ids"),
        ({"on_parent_failure": "skip"}, "on_parent_failure must be 'cancel'"),
    ],
)
def test_invalid_unique_and_after_options_are_rejected(
    app: asyncjobs.App, options: dict[str, object], message: str
) -> None:
    @app.task
    async def noop() -> None: ...

    with pytest.raises(asyncjobs.ConfigurationError, match=message):
        noop.options(**options)  # type: ignore[arg-type]


async def test_bulk_enqueue_stays_linear_under_a_cached_generic_plan(
    app: asyncjobs.App, client: asyncjobs.Client, pg_dsn: str, schema: str
) -> None:
    """A prepared statement runs on a generic plan after five executions, planned without
    knowing the batch size: joins between the statement's CTEs then become nested loops.
    A jsonb map of the whole batch, detoasted at every lookup, was quadratic too.
    60,000 jobs take a few seconds; quadratic, they took minutes."""

    @app.task
    async def item(n: int) -> None: ...

    parent = await client.enqueue(item.options(delay=3600), -1)
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute(f'VACUUM ANALYZE "{schema}".jobs')
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        calls = [
            item.options(unique_key=f"k{n}").call(n)
            if n % 2
            else item.options(after=parent).call(n)
            if n % 10 == 0
            else item.call(n)
            for n in range(60_000)
        ]
        with anyio.fail_after(40):
            async with conn.transaction():
                ids = await client.enqueue_many_tx(conn, calls)
    finally:
        await conn.close()
    assert len(set(ids)) == 60_000
    assert (await client.get(ids[10])).state is asyncjobs.JobState.AWAITING
