"""Checks of the values callers pass in, shared by the client, tasks, schedules and the CLI.

Each returns the value when it is valid and raises ConfigurationError (a ValueError) saying
what was wrong and what to pass instead; nothing reaches PostgreSQL before it is checked,
so a bad value never becomes a raw driver error or a silently changed row.
"""

from __future__ import annotations

import datetime
import math
from typing import TYPE_CHECKING

from .errors import ConfigurationError

if TYPE_CHECKING:
    from typing_extensions import TypeIs  # typing.TypeIs from Python 3.13

INT32 = 2**31
INT64 = 2**63
# PostgreSQL stores timestamps up to year 294276, Python's datetime only up to 9999: a later
# run_at could be written but never read back. The margin keeps now() + delay in range too.
LATEST = datetime.datetime(9000, 1, 1, tzinfo=datetime.UTC)
# A run_at in the past means "now"; one this far back is a mistake, and asyncpg would store
# datetime.min as -infinity, a time PostgreSQL can't subtract from now().
EARLIEST = datetime.datetime(1900, 1, 1, tzinfo=datetime.UTC)
# A delay longer than this is a mistake (seconds given as milliseconds, say), not a plan.
MAX_DELAY = 100 * 365.25 * 86400.0
MAX_NAME = 200
# Any duration: about 31,700 years, well inside PostgreSQL's intervals.
MAX_SECONDS = 1e12


def is_int(value: object) -> TypeIs[int]:
    """An int, and not a bool (which Python counts as one)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> TypeIs[int | float]:
    """An int or a float, and not a bool; may be NaN or infinite."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def integer(name: str, value: object, low: int, high: int) -> int:
    """`value` if it is an int (not a bool) with low <= value < high."""
    if not is_int(value) or not low <= value < high:
        bound = "" if high >= INT64 else f" and < {high}"
        raise ConfigurationError(f"{name} must be an integer >= {low}{bound}, got {value!r}")
    return value


def job_id(value: object) -> int:
    """A job id as PostgreSQL stores it: an int from 1 to 2**63 - 1."""
    if not is_int(value) or not 1 <= value < INT64:
        raise ConfigurationError(
            f"a job id is an integer >= 1 (as enqueue returned it), got {value!r}"
        )
    return value


def seconds(name: str, value: object, *, zero: bool = True, most: float = MAX_SECONDS) -> float:
    """A finite number of seconds, > 0 (or >= 0 with `zero`) and <= `most`."""
    given = value
    if isinstance(value, datetime.timedelta):
        value = value.total_seconds()
    if (
        not is_number(value)
        or (isinstance(value, float) and not math.isfinite(value))
        or value > most
    ):
        raise ConfigurationError(
            f"{name} must be seconds (a finite number, at most {_span(most)}) or a "
            f"timedelta, got {given!r}"
        )
    if value < 0 or (value == 0 and not zero):
        raise ConfigurationError(f"{name} must be seconds {'>=' if zero else '>'} 0, got {given!r}")
    return float(value)


def _span(seconds: float) -> str:
    year = 365.25 * 86400
    return f"{seconds / year:,.0f} years" if seconds >= year else f"{seconds:g}"


def text(name: str, value: object, *, most: int = MAX_NAME, hint: str = "") -> str:
    """A non-empty string PostgreSQL can store (no NUL, no lone surrogate) of at most
    `most` characters."""
    if not isinstance(value, str):
        raise ConfigurationError(f"invalid {name} {value!r}: it must be a string{hint}")
    problem = storable_text_problem(value)
    if problem is None and not value.strip():
        problem = "it is empty"
    if problem is None and len(value) > most:
        problem = f"it is {len(value)} characters long (at most {most})"
    if problem is not None:
        shown = value if len(value) <= 80 else value[:80] + "..."
        raise ConfigurationError(f"invalid {name} {shown!r}: {problem}{hint}")
    return value


def storable_text_problem(value: str) -> str | None:
    """Why PostgreSQL can't store this text, or None if it can."""
    if "\x00" in value:
        return "it holds a NUL character ('\\x00'), which PostgreSQL cannot store"
    try:
        value.encode()
    except UnicodeEncodeError:
        return "it holds a lone surrogate (not valid Unicode), which cannot be stored"
    return None


def aware_datetime(name: str, value: object) -> datetime.datetime:
    """A time-zone-aware datetime from EARLIEST to before LATEST."""
    if not isinstance(value, datetime.datetime):
        raise ConfigurationError(f"{name} must be a datetime, got {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ConfigurationError(
            f"{name} {value.isoformat()} has no time zone: pass an aware datetime, e.g. "
            "datetime.now(timezone.utc) + timedelta(minutes=5)"
        )
    try:
        late = value >= LATEST
    except OverflowError:  # near year 9999 with an offset that pushes it past
        late = True
    if late:
        raise ConfigurationError(
            f"{name} {value.isoformat()} is too far in the future: use a time before {LATEST.year}"
        )
    try:
        early = value < EARLIEST
    except OverflowError:  # near year 1 with an offset that pushes it before
        early = True
    if early:
        raise ConfigurationError(
            f"{name} {value.isoformat()} is too far in the past: use a time after "
            f"{EARLIEST.year} (a time in the past runs the job now)"
        )
    return value
