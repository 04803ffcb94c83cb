"""The dashboard's reads: its statements (queries.sql here), bound to one schema."""

from __future__ import annotations

import dataclasses
from importlib import resources
from typing import Any

import orjson

from ..db.sql import parse, render
from ..errors import ConfigurationError
from ..job import JobState
from ..tasks import validate_queue

PAGE = 50
# Counted up to this many; more are shown as "1,000+".
COUNT_CAP = 1000
# Jobs read by the overview's sample, about: below, it reads them all (exact). 10,000
# keeps the page within 200 ms at p95 with a million jobs on a loaded 2-core machine (20,000
# did not); a state of 1% is then estimated from about 100 rows.
SAMPLE_ROWS = 10_000
# A filter with no index to use (state, task, queue, arguments) reads at most this many of
# the newest job ids per page, then says so and offers the next stretch: a rare combination
# would read the whole table.
SCAN_WINDOW = 100_000


def sample_percent(estimated_jobs: int) -> float:
    """The share of the table's pages the overview reads: all of a small table."""
    if estimated_jobs <= SAMPLE_ROWS * 2:
        return 100.0
    return max(0.5, 100.0 * SAMPLE_ROWS / estimated_jobs)


class BadFilter(ConfigurationError):
    """A jobs filter that can't be used; its message says which and why."""


@dataclasses.dataclass(frozen=True, slots=True)
class JobFilter:
    """The jobs page's filters; None: not filtered."""

    state: str | None = None
    task: str | None = None
    queue: str | None = None
    id: int | None = None
    unique_key: str | None = None
    args: str | None = None  # JSON text

    @classmethod
    def parse(cls, params: Any) -> JobFilter:
        """From query or form parameters; BadFilter with a clear message if one is wrong."""

        def text(name: str) -> str | None:
            value = params.get(name)
            if value is None or not str(value).strip():
                return None
            value = str(value).strip()
            if "\x00" in value or len(value) > 1000:
                raise BadFilter(f"bad {name} filter: at most 1000 characters, no NUL")
            return value

        state = text("state")
        if state is not None and state not in {s.value for s in JobState}:
            names = ", ".join(s.value for s in JobState)
            raise BadFilter(f"bad state filter {state!r}: use one of {names}")
        queue = text("queue")
        if queue is not None:
            try:
                validate_queue(queue)
            except ConfigurationError as exc:
                raise BadFilter(f"bad queue filter: {exc}") from None
        ident = text("id")
        job_id = None
        if ident is not None:
            if not ident.isdigit() or not 1 <= int(ident) < 2**63:
                raise BadFilter(f"bad id filter {ident!r}: a job id is a whole number >= 1")
            job_id = int(ident)
        args = text("args")
        if args is not None:
            try:
                value = orjson.loads(args)
            except orjson.JSONDecodeError as exc:
                raise BadFilter(f"bad args filter: not JSON ({exc})") from None
            if not isinstance(value, (list, dict)):
                raise BadFilter(
                    "bad args filter: give a JSON array (contained in the positional "
                    'arguments, e.g. ["a@example.com"]) or object (in the keyword ones, '
                    'e.g. {"subject": "hi"})'
                )
        return cls(state, text("task"), queue, job_id, text("unique_key"), args)

    @property
    def indexed(self) -> bool:
        """Whether an index finds the matching jobs (id, unique key), so that no scan of
        the table needs a bound."""
        return self.id is not None or self.unique_key is not None

    def values(self) -> tuple[Any, ...]:
        """The statements' $1-$6."""
        return (self.state, self.task, self.queue, self.id, self.unique_key, self.args)

    def query(self) -> dict[str, str]:
        """As query parameters (only those set)."""
        pairs = dataclasses.asdict(self).items()
        return {k: str(v) for k, v in pairs if v is not None}


@dataclasses.dataclass(frozen=True, slots=True)
class DashboardQueries:
    """Each statement of the dashboard's queries.sql, rendered for one schema."""

    table_size: str
    state_counts: str
    window_stats: str
    throughput: str
    custom_plans: str
    newest_job_id: str
    list_jobs: str
    count_jobs: str
    matching_ids: str
    children: str
    relatives: str

    @classmethod
    def for_schema(cls, schema: str) -> DashboardQueries:
        """Load queries.sql and render every statement for `schema`."""
        blocks = parse(resources.files(__package__).joinpath("queries.sql").read_text())
        return cls(**{name: render(sql, schema) for name, sql in blocks.items()})
