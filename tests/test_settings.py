"""Job options, app settings and worker settings: checked once, in one place each, and
refused with clear errors (no database)."""

from __future__ import annotations

import dataclasses
import datetime
import typing

import pytest

import asyncjobs
from asyncjobs.worker.settings import WorkerOptions, WorkerSettings


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"queue": "has space"}, "invalid queue name"),
        ({"priority": 2**40}, "priority"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"timeout": -1}, "timeout"),
        ({"delay": -5}, "delay"),
        ({"run_at": datetime.datetime(2030, 1, 1)}, "no time zone"),
    ],
)
def test_invalid_options_are_rejected(options: dict[str, object], message: str) -> None:
    app = asyncjobs.App("postgresql://unused")

    @app.task
    async def task() -> None: ...

    with pytest.raises(asyncjobs.ConfigurationError, match=message):
        task.options(**options)  # type: ignore[arg-type]


def test_invalid_worker_and_app_settings_are_rejected() -> None:
    with pytest.raises(asyncjobs.ConfigurationError, match="schema name"):
        asyncjobs.App("postgresql://unused", schema="Robert'); DROP TABLE")
    app = asyncjobs.App("postgresql://unused")
    with pytest.raises(asyncjobs.ConfigurationError, match="concurrency"):
        app.worker(concurrency=0)
    with pytest.raises(asyncjobs.ConfigurationError, match="queue name"):
        app.worker(queues=["ok", "not ok"])
    with pytest.raises(asyncjobs.ConfigurationError, match="string"):
        app.worker(queues="emails")  # type: ignore[arg-type]


def test_the_keyword_options_are_the_settings_fields() -> None:
    assert WorkerOptions.__required_keys__ == frozenset()
    assert list(WorkerOptions.__annotations__) == [
        f.name for f in dataclasses.fields(WorkerSettings)
    ]
    assert typing.get_type_hints(WorkerOptions) == typing.get_type_hints(WorkerSettings)


def test_app_worker_and_worker_take_the_same_settings() -> None:
    app = asyncjobs.App("postgresql://nowhere/x")

    @app.task(queue="emails")
    async def send() -> None: ...

    worker = app.worker(concurrency=3, grace=1.5)
    assert worker.settings == WorkerSettings(concurrency=3, grace=1.5)
    assert worker.queues == ["emails"]
    assert worker.settings.claim_session_limit == 3
    assert asyncjobs.Worker(app).settings == WorkerSettings()
    assert asyncjobs.Worker(app, WorkerSettings(concurrency=40)).settings.claim_session_limit == 10
    replaced = asyncjobs.Worker(app, WorkerSettings(concurrency=40), claim_sessions=2)
    assert replaced.settings.claim_session_limit == 2
    assert app.worker(prune=False).retention is None
    assert app.worker().retention == app.retention


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"concurrency": 0}, "concurrency must be an integer >= 1"),
        ({"concurrency": True}, "concurrency must be an integer >= 1"),
        ({"claim_sessions": 0}, "claim_sessions must be an integer >= 1"),
        ({"queues": "emails"}, "queues must be a list of names"),
        ({"queues": []}, "queues must name at least one queue"),
        ({"queues": ["a b"]}, "invalid queue name"),
        ({"retention": 5}, "retention must be an asyncjobs.Retention"),
        ({"grace": -1}, "grace must be seconds"),
        ({"poll_interval": 0}, "poll_interval must be seconds > 0"),
        ({"heartbeat_interval": float("nan")}, "heartbeat_interval must be seconds"),
        ({"hand_off_after": float("inf")}, "hand_off_after must be seconds"),
    ],
)
def test_bad_settings_are_refused_by_name(options: dict[str, object], message: str) -> None:
    with pytest.raises(asyncjobs.ConfigurationError, match=message):
        WorkerSettings(**options)  # type: ignore[arg-type]
