"""Numbered schema migrations, applied in order under an advisory lock."""

from __future__ import annotations

import dataclasses
import re
from importlib import resources
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from ...errors import MigrationError
from ..sql import render

if TYPE_CHECKING:
    # Subscripted only for the type checker: asyncpg's classes are not generic at run time.
    Connection: TypeAlias = asyncpg.Connection[Any] | PoolConnectionProxy[Any]


_FILE = re.compile(r"(\d{4})_(\w+)\.sql")


@dataclasses.dataclass(frozen=True, slots=True)
class Migration:
    """One numbered migration file."""

    version: int
    name: str
    sql: str


def available() -> list[Migration]:
    """Every migration shipped with this asyncjobs, oldest first."""
    found = []
    for entry in resources.files(__package__).iterdir():
        match = _FILE.fullmatch(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text()))
    return sorted(found, key=lambda m: m.version)


async def migrate(conn: Connection, schema: str) -> list[int]:
    """Bring `schema` up to date; return the versions applied now.

    Safe to call from many processes at once: a transaction-scoped advisory lock keyed by
    the schema serializes them, and each one sees what the others applied.
    """
    migrations = available()
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"asyncjobs:{schema}")
        await conn.execute(render("CREATE SCHEMA IF NOT EXISTS {schema}", schema))
        await conn.execute(
            render(
                "CREATE TABLE IF NOT EXISTS {schema}.migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())",
                schema,
            )
        )
        applied = {
            row["version"]
            for row in await conn.fetch(render("SELECT version FROM {schema}.migrations", schema))
        }
        newest = migrations[-1].version
        if applied and max(applied) > newest:
            raise MigrationError(
                f"schema {schema!r} is at version {max(applied)}, newer than this asyncjobs "
                f"knows ({newest}): upgrade asyncjobs on this machine"
            )
        done = []
        for migration in migrations:
            if migration.version in applied:
                continue
            await conn.execute(render(migration.sql, schema))
            await conn.execute(
                render("INSERT INTO {schema}.migrations (version, name) VALUES ($1, $2)", schema),
                migration.version,
                migration.name,
            )
            done.append(migration.version)
        return done


async def check(conn: Connection, schema: str) -> None:
    """Raise MigrationError unless `schema` has every migration applied.

    Versions may have gaps (branches take numbers ahead of time), so what counts is the set
    applied, not only the newest: a schema at 1 and 3 still lacks 2.
    """
    shipped = available()
    newest = shipped[-1].version
    exists = await conn.fetchval("SELECT to_regclass($1)", f'"{schema}".migrations')
    applied: set[int] = set()
    if exists:
        rows = await conn.fetch(render("SELECT version FROM {schema}.migrations", schema))
        applied = {row["version"] for row in rows}
    current = max(applied, default=None)
    if current is not None and current > newest:
        raise MigrationError(
            f"schema {schema!r} is at version {max(applied)}, newer than this asyncjobs knows "
            f"({newest}): upgrade asyncjobs on this machine"
        )
    missing = [m.version for m in shipped if m.version not in applied]
    if missing:
        at = f"version {current}" if current is not None else "version none"
        lacks = f" (missing {', '.join(map(str, missing))})" if current is not None else ""
        raise MigrationError(
            f"schema {schema!r} is at {at}{lacks}, asyncjobs needs {newest}: "
            "run `asyncjobs migrate` (or leave migrate=True, the default)"
        )
