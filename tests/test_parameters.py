"""Each named parameter record matches its statement: the fields are the `$n` of the
statement's "Parameters:" comment in queries.sql, in order, and the statement uses exactly
those (no database)."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from asyncjobs.db.parameters import RECORDS

_BLOCK = re.compile(r"^-- name: (\w+)\n", re.MULTILINE)


def _blocks() -> dict[str, str]:
    text = resources.files("asyncjobs.db").joinpath("queries.sql").read_text()
    parts = _BLOCK.split(text)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def documented(block: str) -> list[tuple[int, str]]:
    """The `$n name` pairs of the block's "Parameters:" paragraph."""
    lines = block.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("-- Parameters:"))
    paragraph = []
    for line in lines[start:]:
        if not line.startswith("--") or line.strip() == "--":
            break
        paragraph.append(line)
    return [(int(n), name) for n, name in re.findall(r"\$(\d+) (\w+)", " ".join(paragraph))]


def used(block: str) -> set[int]:
    """The `$n` the statement itself uses (its comments left out)."""
    body = "\n".join(line for line in block.splitlines() if not line.startswith("--"))
    return {int(n) for n in re.findall(r"\$(\d+)", body)}


@pytest.mark.parametrize("statement", sorted(RECORDS))
def test_a_record_names_its_statements_parameters_in_order(statement: str) -> None:
    block = _blocks()[statement]
    pairs = documented(block)
    assert [n for n, _ in pairs] == list(range(1, len(pairs) + 1))
    assert [name for _, name in pairs] == list(RECORDS[statement]._fields)  # type: ignore[attr-defined]
    assert used(block) == set(range(1, len(pairs) + 1))


def test_a_shifted_parameter_is_noticed() -> None:
    block = "-- Parameters: $1 job_ids, $2 key.\n--\n-- Text.\nSELECT $1, $3;\n"
    assert documented(block) == [(1, "job_ids"), (2, "key")]
    assert used(block) == {1, 3}
