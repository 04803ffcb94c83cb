"""Connections of the libraries `enqueue_tx` takes, made from a test DSN: SQLAlchemy's
engines, psycopg's connections and a configured Django."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def sqlalchemy_engine(dsn: str, driver: str = "asyncpg") -> AsyncEngine:
    """An async engine on `dsn` through `driver` (asyncpg or psycopg)."""
    return create_async_engine(dsn.replace("postgresql://", f"postgresql+{driver}://", 1))


async def psycopg_async(dsn: str, *, autocommit: bool = False) -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(dsn, autocommit=autocommit)


def psycopg_sync(dsn: str, *, autocommit: bool = False) -> psycopg.Connection[Any]:
    return psycopg.Connection.connect(dsn, autocommit=autocommit)


def django_database(dsn: str) -> dict[str, Any]:
    """Django's DATABASES entry for `dsn` (psycopg 3)."""
    params = conninfo_to_dict(dsn)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": params.get("dbname", "postgres"),
        "USER": params.get("user", ""),
        "PASSWORD": params.get("password", ""),
        "HOST": params.get("host", ""),
        "PORT": params.get("port", ""),
        "CONN_MAX_AGE": 0,
    }


def configure_django(dsn: str) -> None:
    """Django's settings, once per process, with `dsn` as its default database."""
    import django
    from django.conf import settings

    if settings.configured:
        return
    settings.configure(DATABASES={"default": django_database(dsn)}, INSTALLED_APPS=[], USE_TZ=True)
    django.setup()
