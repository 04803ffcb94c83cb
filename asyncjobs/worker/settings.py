"""A worker's settings, their defaults and their checks, in one place: `app.worker(...)`,
`Worker(app, ...)` and the command's `asyncjobs worker` all make a `WorkerSettings`."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, TypedDict

from .. import validation
from ..db.connections import GIVE_UP_AFTER, SERVER_GIVES_UP_AFTER
from ..errors import ConfigurationError
from ..retention import Retention
from ..tasks import validate_queue
from .lease import PING_TIMEOUT

if TYPE_CHECKING:
    from ..app import App

# Sessions holding claim transactions, by default: a worker also has a pool of up to 4, a
# listener, a recorder, a lease session and a watcher, so one worker needs at most
# claim_sessions + 8 connections.
DEFAULT_CLAIM_SESSIONS = 10

# The longest a job may run under its claim: its hand-off is due by then, and a failed one
# stops the job (PING_TIMEOUT later) before the server lets a cut-off claim session go
# (see worker/handoff.py and db/connections.py).
MAX_HAND_OFF_AFTER = SERVER_GIVES_UP_AFTER - PING_TIMEOUT - GIVE_UP_AFTER - 1.0


@dataclasses.dataclass(frozen=True, slots=True)
class WorkerSettings:
    """How a worker runs; each value is checked when the settings are made.

    `concurrency`: jobs run at once. `queues`: the queues taken from, in the order given
    (default: every queue the app's tasks use, or "default"). On stop, running jobs get
    `grace` seconds to finish, then are interrupted and queued again without spending an
    attempt. `poll_interval`: the fallback poll, in seconds, should a NOTIFY be missed.
    `heartbeat_interval`: seconds between heartbeats (which also catch a missed stop
    broadcast). The worker prunes finished jobs by `retention` (default: the app's) unless
    `prune=False`. At most `claim_sessions` database sessions (default: concurrency, at
    most 10) hold claim transactions; past that, new jobs join the youngest open claim. A
    job still running after `hand_off_after` seconds leaves its claim for the worker's
    lease (0: at once), so that no transaction stays open for as long as a long job runs.
    """

    concurrency: int = 10
    queues: Sequence[str] | None = None
    grace: float = 0.0
    poll_interval: float = 5.0
    heartbeat_interval: float = 10.0
    retention: Retention | None = None
    prune: bool = True
    claim_sessions: int | None = None
    hand_off_after: float = 2.0

    def __post_init__(self) -> None:
        validation.integer("concurrency", self.concurrency, 1, validation.INT64)
        if self.claim_sessions is not None:
            validation.integer("claim_sessions", self.claim_sessions, 1, validation.INT64)
        if isinstance(self.queues, str):
            raise ConfigurationError(
                f"queues must be a list of names, got the string {self.queues!r}"
            )
        if self.queues is not None and not isinstance(self.queues, Sequence):
            raise ConfigurationError(f"queues must be a list of names, got {self.queues!r}")
        if self.queues is not None:
            if not self.queues:
                raise ConfigurationError("queues must name at least one queue")
            self._set("queues", tuple(validate_queue(q) for q in self.queues))
        if not isinstance(self.prune, bool):
            raise ConfigurationError(f"prune must be True or False, got {self.prune!r}")
        if self.retention is not None and not isinstance(self.retention, Retention):
            raise ConfigurationError(
                f"retention must be an asyncjobs.Retention(...) or None, got {self.retention!r}"
            )
        self._set("grace", validation.seconds("grace", self.grace))
        self._set(
            "poll_interval", validation.seconds("poll_interval", self.poll_interval, zero=False)
        )
        self._set(
            "heartbeat_interval",
            validation.seconds("heartbeat_interval", self.heartbeat_interval, zero=False),
        )
        self._set(
            "hand_off_after",
            validation.seconds("hand_off_after", self.hand_off_after, most=MAX_HAND_OFF_AFTER),
        )

    def _set(self, name: str, value: object) -> None:
        object.__setattr__(self, name, value)

    def queues_of(self, app: App) -> list[str]:
        """The queues to take jobs from: those given, else every queue of `app`'s tasks
        (or "default")."""
        if self.queues is not None:
            return list(self.queues)
        return sorted({task.defaults.queue for task in app.tasks.values()} or {"default"})

    def pruning(self, app: App) -> Retention | None:
        """The retention this worker prunes by; None: it doesn't prune (`prune=False`, or
        the app keeps jobs forever and none was given)."""
        return (self.retention or app.retention) if self.prune else None

    @property
    def claim_session_limit(self) -> int:
        """`claim_sessions`, else the concurrency, at most DEFAULT_CLAIM_SESSIONS."""
        if self.claim_sessions is not None:
            return self.claim_sessions
        return min(self.concurrency, DEFAULT_CLAIM_SESSIONS)


class WorkerOptions(TypedDict, total=False):
    """The fields of WorkerSettings as keyword arguments (`app.worker(concurrency=20)`);
    tests/test_worker_settings.py checks that the two agree."""

    concurrency: int
    queues: Sequence[str] | None
    grace: float
    poll_interval: float
    heartbeat_interval: float
    retention: Retention | None
    prune: bool
    claim_sessions: int | None
    hand_off_after: float
