"""Who watches whom (no database): each worker watches the next key after its own in the
ring of registered keys, the last one the first, and nobody when it is alone."""

from __future__ import annotations

import pytest

from asyncjobs.worker.watcher import next_key


@pytest.mark.parametrize(
    ("keys", "own", "watched"),
    [
        ([], 1, None),  # no row registered yet
        ([1], 1, None),  # alone
        ([1, 2, 3], 1, 2),
        ([1, 2, 3], 2, 3),
        ([1, 2, 3], 3, 1),  # the last wraps to the first
        ([3, 1, 2, 2], 2, 3),  # read in order, duplicates once
        ([2, 5], 3, 5),  # its own row not in the list yet: the next one after it
        ([2, 5], 9, 2),
        ([2, 5], 1, 2),
    ],
)
def test_next_key(keys: list[int], own: int, watched: int | None) -> None:
    assert next_key(keys, own) == watched


def test_every_worker_is_watched_by_exactly_one_peer() -> None:
    for ring in ([1, 2], [4, 9, 17], list(range(1, 12))):
        watched = [next_key(ring, own) for own in ring]
        assert sorted(watched) == ring  # type: ignore[type-var]
