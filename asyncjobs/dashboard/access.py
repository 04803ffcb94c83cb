"""Who may do what on the dashboard: an auth callable decides per request."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Awaitable, Callable, Iterable

from starlette.requests import Request

# Every action the dashboard offers, by name.
ACTIONS = frozenset(
    {
        "cancel",
        "requeue",
        "retry",
        "delete",
        "stop_worker",
        "stop_workers",
        "pause_queue",
        "resume_queue",
        "pause_schedule",
        "resume_schedule",
        "trigger_schedule",
    }
)

_LOCAL_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


@dataclasses.dataclass(frozen=True, slots=True)
class Access:
    """What one request may do: see everything, and the `actions` listed. `user` names who
    made it, in the log of actions."""

    user: str = "anonymous"
    actions: frozenset[str] = ACTIONS

    @classmethod
    def full(cls, user: str = "anonymous") -> Access:
        """Every action."""
        return cls(user, ACTIONS)

    @classmethod
    def read_only(cls, user: str = "anonymous") -> Access:
        """No action at all."""
        return cls(user, frozenset())

    @classmethod
    def only(cls, user: str, actions: Iterable[str]) -> Access:
        """Only these actions (names from ACTIONS)."""
        wanted = frozenset(actions)
        unknown = wanted - ACTIONS
        if unknown:
            raise ValueError(f"unknown dashboard actions {sorted(unknown)}: use {sorted(ACTIONS)}")
        return cls(user, wanted)

    def allows(self, action: str) -> bool:
        """Whether this request may do `action`."""
        return action in self.actions


# Given the request, an Access, or None to refuse it. May be async.
Auth = Callable[[Request], "Access | Awaitable[Access | None] | None"]


def is_local(request: Request) -> bool:
    """Whether the request comes from this machine."""
    return request.client is not None and request.client.host in _LOCAL_HOSTS


async def resolve(request: Request, auth: Auth | None, read_only: bool) -> Access | None:
    """The request's access: the auth callable's answer, or, without one, full access for
    local clients only. `read_only` takes every action away."""
    if auth is None:
        access: Access | None = Access.full("local") if is_local(request) else None
    else:
        answer = auth(request)
        access = await answer if inspect.isawaitable(answer) else answer
    if access is not None and read_only:
        access = Access.read_only(access.user)
    return access
