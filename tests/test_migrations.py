"""The schema: schema.sql and the migrations build the same catalog, migrating is safe from
many processes at once, version mismatches are refused clearly, and every runtime statement
plans against a migrated schema."""

from __future__ import annotations

import dataclasses
from importlib import resources
from typing import Any

import anyio
import asyncpg
import pytest

import asyncjobs
from asyncjobs.db.migrations import available, check, migrate
from asyncjobs.db.sql import Queries, parse, render


def _schema_sql() -> str:
    return resources.files("asyncjobs.db").joinpath("schema.sql").read_text()


# Each query takes the schema name as $1 and returns rows in a stable order.
_CATALOG: dict[str, str] = {
    "relations": """
        SELECT c.relname, c.relkind::text, c.relpersistence::text, c.reloptions
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = $1
         ORDER BY c.relname""",
    "columns": """
        SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod) AS type,
               a.attnotnull, pg_get_expr(d.adbin, d.adrelid) AS default,
               a.attidentity::text, a.attgenerated::text, co.collname
          FROM pg_attribute a
          JOIN pg_class c ON c.oid = a.attrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
          LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
          LEFT JOIN pg_collation co ON co.oid = a.attcollation AND a.attcollation <> 0
         WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
           AND a.attnum > 0 AND NOT a.attisdropped
         ORDER BY c.relname, a.attnum""",
    "indexes": """
        SELECT tablename, indexname, indexdef FROM pg_indexes
         WHERE schemaname = $1 ORDER BY tablename, indexname""",
    "constraints": """
        SELECT coalesce(c.relname, format_type(con.contypid, NULL)) AS owner, con.conname,
               con.contype::text, pg_get_constraintdef(con.oid) AS definition
          FROM pg_constraint con
          JOIN pg_namespace n ON n.oid = con.connamespace
          LEFT JOIN pg_class c ON c.oid = con.conrelid
         WHERE n.nspname = $1
         ORDER BY 1, 2""",
    "functions": """
        SELECT p.proname, pg_get_function_identity_arguments(p.oid) AS arguments,
               pg_get_functiondef(p.oid) AS definition
          FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname = $1
         ORDER BY 1, 2""",
    "sequences": """
        SELECT sequencename, data_type::text, start_value, min_value, max_value,
               increment_by, cycle, cache_size
          FROM pg_sequences WHERE schemaname = $1 ORDER BY sequencename""",
    "sequence_owners": """
        SELECT s.relname AS sequence, t.relname AS owner_table, a.attname AS owner_column,
               d.deptype::text
          FROM pg_depend d
          JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
          JOIN pg_namespace n ON n.oid = s.relnamespace
          JOIN pg_class t ON t.oid = d.refobjid
          JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
         WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
           AND n.nspname = $1
         ORDER BY 1, 2, 3""",
    "triggers": """
        SELECT c.relname, t.tgname, pg_get_triggerdef(t.oid) AS definition
          FROM pg_trigger t
          JOIN pg_class c ON c.oid = t.tgrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = $1 AND NOT t.tgisinternal
         ORDER BY 1, 2""",
    "views": """
        SELECT c.relname, pg_get_viewdef(c.oid) AS definition
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = $1 AND c.relkind IN ('v', 'm')
         ORDER BY 1""",
    "types": """
        SELECT t.typname, t.typtype::text,
               (SELECT array_agg(e.enumlabel ORDER BY e.enumsortorder)
                  FROM pg_enum e WHERE e.enumtypid = t.oid) AS labels,
               format_type(t.typbasetype, t.typtypmod) AS base
          FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
         WHERE n.nspname = $1 AND t.typtype IN ('e', 'd', 'r', 'm')
         ORDER BY 1""",
    "comments": """
        SELECT coalesce(c.relname, p.proname) AS object, d.objsubid, d.description
          FROM pg_description d
          LEFT JOIN pg_class c ON d.classoid = 'pg_class'::regclass AND c.oid = d.objoid
          LEFT JOIN pg_proc p ON d.classoid = 'pg_proc'::regclass AND p.oid = d.objoid
          JOIN pg_namespace n ON n.oid = coalesce(c.relnamespace, p.pronamespace)
         WHERE n.nspname = $1
         ORDER BY 1, 2""",
}


async def _catalog(conn: asyncpg.Connection, schema: str) -> dict[str, list[tuple[Any, ...]]]:
    """Everything about `schema` that its DDL decides, with its own name replaced."""

    def normalize(value: Any) -> Any:
        if isinstance(value, str):
            return value.replace(f'"{schema}"', "{schema}").replace(schema, "{schema}")
        if isinstance(value, list):
            return [normalize(v) for v in value]
        return value

    snapshot = {}
    for section, query in _CATALOG.items():
        rows = await conn.fetch(query, schema)
        snapshot[section] = [tuple(normalize(v) for v in row.values()) for row in rows]
    applied = render("SELECT version, name FROM {schema}.migrations ORDER BY version", schema)
    snapshot["applied_migrations"] = [tuple(row.values()) for row in await conn.fetch(applied)]
    return snapshot


async def test_schema_sql_builds_the_same_catalog_as_the_migrations(
    admin: asyncpg.Connection, schema: str, other_schema: str
) -> None:
    await migrate(admin, schema)
    await admin.execute(render(_schema_sql(), other_schema))
    migrated = await _catalog(admin, schema)
    installed = await _catalog(admin, other_schema)

    # Not comparing two empty lists: the catalog really was read.
    tables = {row[0] for row in migrated["relations"] if row[1] == "r"}
    assert tables == {
        "jobs",
        "queue",
        "workers",
        "migrations",
        "schedules",
        "job_parents",
        "task_names",
        "paused_queues",
    }
    functions = {row[0] for row in migrated["functions"]}
    assert {"cancel_job", "requeue_job", "delete_job", "stop_workers", "enqueue"} <= functions
    assert migrated["applied_migrations"] == [(m.version, m.name) for m in available()]

    for section in migrated:
        assert installed[section] == migrated[section], f"schema.sql differs in {section}"


async def test_a_schema_sql_install_is_up_to_date_and_works(
    pg_dsn: str, admin: asyncpg.Connection, schema: str
) -> None:
    await admin.execute(render(_schema_sql(), schema))
    await check(admin, schema)
    assert await migrate(admin, schema) == []

    app = asyncjobs.App(pg_dsn, schema=schema, migrate=False)

    @app.task
    async def noop() -> None: ...

    async with app.client() as client:
        job = await client.get(await client.enqueue(noop))
        assert job.state is asyncjobs.JobState.QUEUED
        assert await client.cancel(job.id) is True


async def test_concurrent_migrations_apply_each_version_once(
    pg_dsn: str, admin: asyncpg.Connection, schema: str
) -> None:
    conns = [await asyncpg.connect(pg_dsn) for _ in range(10)]
    results: list[list[int]] = []

    async def run(conn: asyncpg.Connection) -> None:
        results.append(await migrate(conn, schema))

    try:
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for conn in conns:
                    tg.start_soon(run, conn)
    finally:
        for conn in conns:
            await conn.close()
    versions = [m.version for m in available()]
    assert sorted(results) == [[]] * 9 + [versions]
    rows = await admin.fetch(f'SELECT version FROM "{schema}".migrations ORDER BY version')
    assert [row["version"] for row in rows] == versions
    await check(admin, schema)


async def test_a_newer_database_is_refused_with_a_clear_message(
    pg_dsn: str, admin: asyncpg.Connection, schema: str
) -> None:
    await migrate(admin, schema)
    newest = available()[-1].version
    await admin.execute(
        f"INSERT INTO \"{schema}\".migrations (version, name) VALUES ($1, 'from_the_future')",
        newest + 1,
    )
    with pytest.raises(asyncjobs.MigrationError, match="newer than this asyncjobs") as raised:
        await migrate(admin, schema)
    assert f"version {newest + 1}" in str(raised.value)
    assert "upgrade asyncjobs" in str(raised.value)
    # An App that migrates on start says the same, and changes nothing.
    with pytest.raises(asyncjobs.MigrationError, match="upgrade asyncjobs"):
        async with asyncjobs.App(pg_dsn, schema=schema).client():
            pass
    count = await admin.fetchval(f'SELECT count(*) FROM "{schema}".migrations')
    assert count == len(available()) + 1


async def test_a_newer_database_without_auto_migrate_says_upgrade(
    pg_dsn: str, admin: asyncpg.Connection, schema: str
) -> None:
    await migrate(admin, schema)
    newest = available()[-1].version
    await admin.execute(
        f"INSERT INTO \"{schema}\".migrations (version, name) VALUES ($1, 'from_the_future')",
        newest + 1,
    )
    with pytest.raises(asyncjobs.MigrationError, match="upgrade asyncjobs"):
        await check(admin, schema)


async def test_without_auto_migrate_an_unmigrated_schema_is_refused(
    pg_dsn: str, admin: asyncpg.Connection, schema: str
) -> None:
    app = asyncjobs.App(pg_dsn, schema=schema, migrate=False)
    with pytest.raises(asyncjobs.MigrationError, match="run `asyncjobs migrate`") as raised:
        async with app.client():
            pass
    assert repr(schema) in str(raised.value)
    # Refusing touched nothing: not even the schema was created.
    assert await admin.fetchval("SELECT to_regnamespace($1)", schema) is None

    assert await app.migrate() == [m.version for m in available()]
    async with app.client() as client:
        assert await client.list_jobs() == []


async def test_without_auto_migrate_a_worker_refuses_an_unmigrated_schema(
    pg_dsn: str, schema: str
) -> None:
    app = asyncjobs.App(pg_dsn, schema=schema, migrate=False)
    with anyio.fail_after(10), pytest.raises(asyncjobs.MigrationError, match="asyncjobs migrate"):
        async with app.worker():
            pass


async def test_every_runtime_statement_plans_against_a_migrated_schema(
    admin: asyncpg.Connection, schema: str
) -> None:
    await migrate(admin, schema)
    text = resources.files("asyncjobs.db").joinpath("queries.sql").read_text()
    blocks = parse(text)
    # The dataclass names exactly the blocks of queries.sql, in the same order.
    assert [f.name for f in dataclasses.fields(Queries)] == list(blocks)
    queries = Queries.for_schema(schema)
    for name in blocks:
        sql = getattr(queries, name)
        assert sql.strip(), name
        assert "{schema}" not in sql and "{channel_prefix}" not in sql, name
        # Bound to the schema: its tables, or (a bare NOTIFY) its channels.
        assert f'"{schema}".' in sql or f"'{schema}." in sql, f"{name} does not name the schema"
        try:
            await admin.prepare(sql)
        except asyncpg.PostgresError as exc:
            pytest.fail(f"statement {name!r} does not plan: {exc}\n{sql}")


def test_migrations_are_numbered_in_order_from_one() -> None:
    # Gaps are allowed: parallel branches reserve their numbers and merge in any order.
    versions = [m.version for m in available()]
    assert versions[0] == 1
    assert versions == sorted(set(versions))
    assert all(m.name and m.sql.strip() for m in available())


async def test_check_refuses_a_schema_missing_a_migration_below_the_newest(
    admin: asyncpg.Connection, schema: str
) -> None:
    await migrate(admin, schema)
    versions = [m.version for m in available()]
    if len(versions) < 2:
        pytest.skip("needs two migrations")
    # As if an older migration had never been applied: check() must not be fooled by the
    # newest version being present.
    await admin.execute(f'DELETE FROM "{schema}".migrations WHERE version = $1', versions[0])
    with pytest.raises(asyncjobs.MigrationError, match=f"missing {versions[0]}"):
        await check(admin, schema)


async def test_migration_17_keeps_what_was_granted_on_enqueue(
    admin: asyncpg.Connection,
    schema: str,
    other_schema: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """It replaces enqueue() (new parameters need a new function): a revoke from PUBLIC
    and a grant to a role, made on the old one, hold for the new one."""
    from asyncjobs.db import migrations

    before = [m for m in available() if m.version < 17]
    monkeypatch.setattr(migrations, "available", lambda: before)
    for name in (schema, other_schema):
        await migrate(admin, name)
    old = (
        f'"{schema}".enqueue(text, jsonb, jsonb, text, integer, integer, float8, float8, '
        "timestamptz, text, text, boolean)"
    )
    await admin.execute(f"REVOKE ALL ON FUNCTION {old} FROM PUBLIC")
    await admin.execute(f"GRANT EXECUTE ON FUNCTION {old} TO pg_monitor")
    monkeypatch.undo()
    for name in (schema, other_schema):
        assert 17 in await migrate(admin, name)

    def acl(name: str) -> str:
        return (
            "SELECT pronargs, proacl::text[],"
            " has_function_privilege('pg_monitor', p.oid, 'EXECUTE')"
            f" FROM pg_proc AS p WHERE p.oid = '\"{name}\".enqueue'::regproc"
        )

    nargs, granted, monitor = await admin.fetchrow(acl(schema))
    assert nargs == 14
    assert monitor
    assert granted is not None
    assert not any(item.startswith("=") for item in granted), granted  # not PUBLIC's
    # Untouched privileges stay the defaults.
    assert tuple(await admin.fetchrow(acl(other_schema))) == (14, None, True)
