"""A view's work, run as `python -m tests.django_site.signup EMAIL commit|fail`: a row of
the project's own and the job about it, in one `transaction.atomic()`; `fail` raises after
both, so neither may exist. Prints the job's id."""

from __future__ import annotations

import os
import sys

import django

django.setup()

from django.db import connection, transaction  # noqa: E402

from tests.worker_app import app, quick  # noqa: E402

jobs = app.sync_client()


def signup(email: str, fail: bool) -> int:
    with transaction.atomic():
        with connection.cursor() as cursor:
            table = f'"{os.environ["ASYNCJOBS_SCHEMA"]}".signups'
            cursor.execute(f"INSERT INTO {table} (email) VALUES (%s)", [email])
        job_id = jobs.enqueue_tx(connection, quick, len(email))
        print(job_id, flush=True)
        if fail:
            raise RuntimeError("the view fails after enqueueing")
    return job_id


if __name__ == "__main__":
    email, outcome = sys.argv[1:]
    try:
        signup(email, fail=outcome == "fail")
    except RuntimeError:
        sys.exit(3)
    finally:
        jobs.close()
