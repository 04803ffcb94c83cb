"""The project's settings: the database is the test's ($ASYNCJOBS_DSN), through psycopg 3."""

from __future__ import annotations

import os

from tests.integrations import django_database

SECRET_KEY = "tests-only"
INSTALLED_APPS: list[str] = []
USE_TZ = True
DATABASES = {"default": django_database(os.environ["ASYNCJOBS_DSN"])}
