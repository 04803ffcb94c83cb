"""Reaching PostgreSQL: an unreachable server, a wrong DSN, a missing database or role, each
with a clear error; a worker retries what may mend and raises what won't."""

from __future__ import annotations

import anyio
import pytest

import asyncjobs


async def test_unreachable_server_and_wrong_dsn_give_clear_errors() -> None:
    refused = asyncjobs.App("postgresql://postgres@127.0.0.1:1/test")
    with pytest.raises(asyncjobs.ConnectionFailed, match="cannot connect to PostgreSQL at"):
        async with refused.client():
            pass
    secret = asyncjobs.App("postgresql://bob:hunter2@127.0.0.1:1/test")
    with pytest.raises(asyncjobs.ConnectionFailed) as raised:
        async with secret.client():
            pass
    assert "hunter2" not in str(raised.value)
    garbage = asyncjobs.App("not a dsn at all")
    with pytest.raises(asyncjobs.AsyncJobsError, match="DSN"):
        async with garbage.client():
            pass


async def test_missing_database_names_the_fix(pg_dsn: str) -> None:
    base = pg_dsn.split("?", maxsplit=1)[0].rsplit("/", 1)[0]
    query = "?" + pg_dsn.split("?", 1)[1] if "?" in pg_dsn else ""
    missing = asyncjobs.App(f"{base}/no_such_db_here{query}")
    with pytest.raises(asyncjobs.ConnectionFailed, match="create the database"):
        async with missing.client():
            pass


async def test_worker_retries_an_unreachable_server_until_stopped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = asyncjobs.App("postgresql://postgres@127.0.0.1:1/test")
    worker = app.worker()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            await anyio.sleep(1.2)
            worker.stop()
    attempts = [r for r in caplog.records if "worker cannot start" in r.getMessage()]
    assert len(attempts) >= 2


async def test_a_worker_refused_by_the_server_raises_instead_of_retrying(pg_dsn: str) -> None:
    # No retry mends a missing database or a refused login: the worker says so at once.
    base = pg_dsn.split("?", maxsplit=1)[0].rsplit("/", 1)[0]
    query = "?" + pg_dsn.split("?", 1)[1] if "?" in pg_dsn else ""
    scheme, _, rest = base.partition("://")
    host = rest.rpartition("@")[2]
    refusals = {
        f"{base}/no_such_db_here{query}": "create the database",
        f"{scheme}://no_such_role_here@{host}/postgres{query}": "check the user and password",
    }
    for dsn, hint in refusals.items():
        with anyio.fail_after(10), pytest.raises(asyncjobs.ConnectionFailed, match=hint) as raised:
            async with asyncjobs.App(dsn).worker():
                pytest.fail("the worker started")
        assert raised.value.permanent
