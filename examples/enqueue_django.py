"""Enqueue inside Django's `transaction.atomic()`: the job exists, and workers hear of it,
only if the block commits (a savepoint that rolls back takes its jobs with it).

    pip install 'asyncjobs[django]'
    python -m examples.enqueue_django            # $ASYNCJOBS_DSN, else the embedded server
    asyncjobs worker examples.tasks:app          # runs the job that was committed

In a project, make one `jobs = app.sync_client()` at module level (it starts nothing until
first used) and call it from views. Django's PostgreSQL backend must run on psycopg 3
(installed by the extra); asyncjobs enqueues on the very connection Django uses.
"""

from __future__ import annotations

import anyio.from_thread
import django
from django.conf import settings
from psycopg.conninfo import conninfo_to_dict

from examples.tasks import app, send_welcome_email

jobs = app.sync_client()


def signup(email: str) -> int:
    """What a view does: its own writes and the job, in one transaction."""
    from django.db import connection, transaction

    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("CREATE TEMP TABLE IF NOT EXISTS signups (email text)")
            cursor.execute("INSERT INTO signups (email) VALUES (%s)", [email])
        return jobs.enqueue_tx(connection, send_welcome_email, email, name="Ada")


def _configure(dsn: str) -> None:
    """Settings for this script; a project has them in settings.py."""
    params = conninfo_to_dict(dsn)
    settings.configure(
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": params.get("dbname", "postgres"),
                "USER": params.get("user", ""),
                "PASSWORD": params.get("password", ""),
                "HOST": params.get("host", ""),
                "PORT": params.get("port", ""),
            }
        },
        USE_TZ=True,
    )
    django.setup()


def main(dsn: str) -> None:
    _configure(dsn)
    with jobs:
        job_id = signup("ada@example.com")
        print(f"committed: job {job_id} is {jobs.get(job_id).state.value}")


if __name__ == "__main__":
    # The app's database (the embedded server's socket, or $ASYNCJOBS_DSN) for Django too.
    with (
        anyio.from_thread.start_blocking_portal() as portal,
        portal.wrap_async_context_manager(app.database()) as dsn,
    ):
        main(dsn)
