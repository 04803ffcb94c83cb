"""The runtime SQL of `queries.sql`, loaded by name and bound to one schema."""

from __future__ import annotations

import dataclasses
import re
from importlib import resources

from ..errors import ConfigurationError

# Lower-case so the quoted and bare forms name the same thing, and short enough that
# "<schema>.control" stays within PostgreSQL's 63-byte identifier limit for channels.
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,47}")
_BLOCK = re.compile(r"^-- name: (\w+)\n", re.MULTILINE)


def validate_schema(schema: str) -> str:
    """Return `schema` if it is a valid asyncjobs schema name, else raise ConfigurationError."""
    if not isinstance(schema, str) or not _SCHEMA_NAME.fullmatch(schema):
        raise ConfigurationError(
            f"invalid schema name {schema!r}: use 1-48 lower-case letters, digits and "
            "underscores, starting with a letter or underscore (e.g. 'asyncjobs')"
        )
    return schema


def render(text: str, schema: str) -> str:
    """Fill the `{schema}` (quoted) and `{channel_prefix}` (bare) slots of SQL text."""
    validate_schema(schema)
    return text.replace("{schema}", f'"{schema}"').replace("{channel_prefix}", schema)


@dataclasses.dataclass(frozen=True, slots=True)
class Queries:
    """Each statement of queries.sql, rendered for one schema, under its own name."""

    enqueue: str
    enqueue_unique_or_after: str
    claim: str
    start_and_finish: str
    fail_lost_jobs: str
    fail_unstartable_jobs: str
    report_progress: str
    attempt_is_current: str
    next_due: str
    running_job_states: str
    get_job: str
    list_jobs: str
    active_job_with_key: str
    cancel_job: str
    requeue_job: str
    delete_job: str
    stop_workers: str
    stop_worker: str
    pause_queue: str
    resume_queue: str
    list_queues: str
    vacuum_queue: str
    try_lock_pruning: str
    unlock_pruning: str
    prune_bound: str
    prune_jobs: str
    job_id_issued: str
    take_worker_key: str
    hold_worker_key: str
    register_worker: str
    heartbeat: str
    prune_workers: str
    unregister_worker: str
    worker_keys: str
    watch_worker: str
    rescue_worker: str
    gone_workers: str
    hand_off: str
    ask_release: str
    let_go: str
    notify_control: str
    wake_queues: str
    list_workers: str
    due_schedules: str
    advance_schedule: str
    next_schedule_due: str
    get_schedule: str
    lock_schedule: str
    list_schedules: str
    insert_schedule: str
    update_schedule: str
    pause_schedule: str
    delete_schedules: str
    lock_schedules_sync: str
    record_task_names: str
    known_task_names: str
    queue_stats: str

    @classmethod
    def for_schema(cls, schema: str) -> Queries:
        """Load queries.sql and render every statement for `schema`."""
        blocks = parse(resources.files(__package__).joinpath("queries.sql").read_text())
        return cls(**{name: render(sql, schema) for name, sql in blocks.items()})


def parse(text: str) -> dict[str, str]:
    """Split a file of `-- name: x` blocks into {name: statement}."""
    parts = _BLOCK.split(text)
    blocks: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        lines = [line for line in body.strip().splitlines() if not line.startswith("--")]
        blocks[name] = "\n".join(lines).strip().rstrip(";")
    return blocks


@dataclasses.dataclass(frozen=True, slots=True)
class Channels:
    """The LISTEN/NOTIFY channels of one schema."""

    enqueue: str
    control: str
    done: str
    schedules: str
    # Running jobs' progress and log lines written (ids, comma-separated; empty: any).
    progress: str

    @classmethod
    def for_schema(cls, schema: str) -> Channels:
        """The channels named after `schema`, so two schemas never hear each other."""
        validate_schema(schema)
        return cls(
            f"{schema}.enqueue",
            f"{schema}.control",
            f"{schema}.done",
            f"{schema}.schedules",
            f"{schema}.progress",
        )
