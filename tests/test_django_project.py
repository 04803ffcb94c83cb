"""Django as a project runs it: DJANGO_SETTINGS_MODULE names a real settings module, and a
view enqueues inside `transaction.atomic()` with its own write, in a process of its own. A
commit keeps both (and a real worker runs the job); an exception in the block keeps neither."""

from __future__ import annotations

import os
import sys

import anyio
import asyncpg

import asyncjobs
from tests.helpers import ROOT, Spawn


async def _signup(pg_dsn: str, schema: str, email: str, outcome: str) -> tuple[int, int]:
    with anyio.fail_after(60):
        done = await anyio.run_process(
            [sys.executable, "-m", "tests.django_site.signup", email, outcome],
            cwd=ROOT,
            env={
                **os.environ,
                "DJANGO_SETTINGS_MODULE": "tests.django_site.settings",
                "ASYNCJOBS_DSN": pg_dsn,
                "ASYNCJOBS_SCHEMA": schema,
                "PYTHONPATH": str(ROOT),
            },
            check=False,
        )
    assert done.returncode in (0, 3), done
    return done.returncode, int(done.stdout.split()[0])


async def test_a_django_view_enqueues_with_its_own_write(
    client: asyncjobs.Client,
    admin: asyncpg.Connection,
    spawn_worker: Spawn,
    pg_dsn: str,
    schema: str,
) -> None:
    await admin.execute(f'CREATE TABLE "{schema}".signups (email text)')
    code, kept = await _signup(pg_dsn, schema, "kept@example.com", "commit")
    assert code == 0
    code, dropped = await _signup(pg_dsn, schema, "dropped@example.com", "fail")
    assert code == 3
    emails = await admin.fetchval(f'SELECT array_agg(email) FROM "{schema}".signups')
    assert emails == ["kept@example.com"]
    jobs = await admin.fetchval(f'SELECT array_agg(id) FROM "{schema}".jobs')
    assert jobs == [kept] and dropped != kept
    spawn_worker()
    assert await client.wait(kept, timeout=30) == len("kept@example.com")
