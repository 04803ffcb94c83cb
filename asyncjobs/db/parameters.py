"""The parameters of the statements that take many, as named records: one field per `$n`,
in order, named as the statement's "Parameters:" comment in queries.sql names them
(tests/test_parameters.py checks that they agree). Build one, then run the statement with
`*record`. The batched ones take a column (a list) per parameter, not a record per row.
"""

from __future__ import annotations

import datetime
import uuid
from typing import Any, NamedTuple


class Enqueue(NamedTuple):
    """Statement `enqueue`: a batch's calls, and their options once per distinct (task,
    options) of the batch (see client/enqueue.py)."""

    options_rows: list[int] | None
    args: str
    kwargs: str | None
    tasks: list[str]
    queues: list[str]
    priorities: list[int]
    max_attempts: list[int]
    timeouts: list[float | None]
    run_ats: list[datetime.datetime | None]
    delays: list[float | None]
    backoffs: list[str | None]
    trace_context: str | None


class EnqueueUniqueOrAfter(NamedTuple):
    """Statement `enqueue_unique_or_after`: those of `enqueue`, then unique keys and parents
    per row of options."""

    options_rows: list[int] | None
    args: str
    kwargs: str | None
    tasks: list[str]
    queues: list[str]
    priorities: list[int]
    max_attempts: list[int]
    timeouts: list[float | None]
    run_ats: list[datetime.datetime | None]
    delays: list[float | None]
    backoffs: list[str | None]
    trace_context: str | None
    unique_keys: list[str | None]
    refuse_duplicates: list[bool]
    parents: list[str | None]
    on_parent_failures: list[str | None]


class StartAndFinish(NamedTuple):
    """Statement `start_and_finish`: finished attempts' outcomes (a column per field, one
    element per outcome), then the claimed rows to start, and the worker starting them."""

    job_ids: list[int]
    entries: list[int]
    attempts: list[int]
    outcomes: list[str]
    results: list[bytes | None]
    errors: list[bytes | None]
    delays: list[float]
    start_job_ids: list[int]
    start_entries: list[int]
    worker_id: uuid.UUID


class ReportProgress(NamedTuple):
    """Statement `report_progress`: one element per running attempt that reported, and how
    many log lines a job keeps."""

    job_ids: list[int]
    entries: list[int]
    attempts: list[int]
    progress: list[float | None]
    messages: list[str | None]
    lines: list[bytes]
    log_lines: int
    checkpoints: list[bytes | None]


class HandOff(NamedTuple):
    """Statement `hand_off`: the attempts that leave their claims, and the key that owns them
    from now on."""

    job_ids: list[int]
    entries: list[int]
    attempts: list[int]
    key: int | None


class RecordTaskNames(NamedTuple):
    """Statement `record_task_names`: a worker's tasks, by name, and their default options."""

    names: list[str]
    queues: list[str]
    priorities: list[int]
    max_attempts: list[int]
    timeouts: list[float | None]


# Each record by the name of its statement.
RECORDS: dict[str, type[tuple[Any, ...]]] = {
    "enqueue": Enqueue,
    "enqueue_unique_or_after": EnqueueUniqueOrAfter,
    "start_and_finish": StartAndFinish,
    "report_progress": ReportProgress,
    "hand_off": HandOff,
    "record_task_names": RecordTaskNames,
}
