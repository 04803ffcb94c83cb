"""What a batch of calls becomes before it is sent (no database): the parameters of
statement `enqueue`, or `enqueue_unique_or_after` when a call has a unique key or parents."""

from __future__ import annotations

import datetime

import orjson
import pytest

import asyncjobs
from asyncjobs.client.enqueue import RS, enqueue_parameters
from asyncjobs.db.parameters import Enqueue, EnqueueUniqueOrAfter
from asyncjobs.tasks import JobOptions, TaskCall

APP = asyncjobs.App("postgresql://unused")


@APP.task(queue="mail", priority=2, max_attempts=4)
async def send(to: str, subject: str = "") -> None: ...


@APP.task
async def other(n: int) -> None: ...


def _values(text: str | None) -> list[object] | None:
    if text is None:
        return None
    return [orjson.loads(part) for part in text.split(RS.decode())]


def test_one_task_with_its_defaults_sends_one_row_of_options() -> None:
    p = enqueue_parameters([send.call("a@x"), send.call("b@x"), send.call("c@x")])
    assert isinstance(p, Enqueue)
    assert p.options_rows is None  # every call takes the first row
    assert _values(p.args) == [["a@x"], ["b@x"], ["c@x"]]
    assert p.kwargs is None  # no call has keyword arguments
    assert (p.tasks, p.queues, p.priorities, p.max_attempts) == ([send.name], ["mail"], [2], [4])
    assert (p.timeouts, p.run_ats, p.delays, p.backoffs) == ([None], [None], [None], [None])


def test_calls_of_other_tasks_or_options_get_their_own_rows() -> None:
    later = send.options(delay=60, retry=asyncjobs.Backoff(base=2, cap=9, jitter=False))
    p = enqueue_parameters([send.call("a"), other.call(1), later.call("b", subject="s")])
    assert isinstance(p, Enqueue)
    assert p.options_rows == [1, 2, 3]
    assert _values(p.args) == [["a"], [1], ["b"]]
    assert _values(p.kwargs) == [{}, {}, {"subject": "s"}]
    assert p.tasks == [send.name, other.name, send.name]
    assert p.delays == [None, None, 60.0]
    assert p.backoffs[2] is not None
    assert orjson.loads(p.backoffs[2]) == {"base": 2, "cap": 9, "jitter": False}


def test_equal_options_that_are_not_the_same_object_get_a_row_each() -> None:
    # Rows are keyed by the options object: cheap, and equal rows cost nothing wrong.
    p = enqueue_parameters([send.options(priority=5).call("a"), send.options(priority=5).call("b")])
    assert p.options_rows == [1, 2]


def test_run_at_is_sent_as_given() -> None:
    at = datetime.datetime(2100, 1, 1, tzinfo=datetime.UTC)
    p = enqueue_parameters([send.options(run_at=at).call("a")])
    assert p.run_ats == [at]


def test_unique_keys_and_parents_take_the_other_statement() -> None:
    keyed = send.options(unique_key="k1", on_duplicate="raise")
    child = other.options(after=[3, 1])
    p = enqueue_parameters([keyed.call("a"), child.call(1), send.call("b")])
    assert isinstance(p, EnqueueUniqueOrAfter)
    assert p.unique_keys == ["k1", None, None]
    assert p.refuse_duplicates == [True, False, False]
    assert p.parents == [None, "{1,3}", None]
    assert p.on_parent_failures == [None, "cancel", None]
    # The first parameters are those of `enqueue`, in the same order.
    assert EnqueueUniqueOrAfter._fields[: len(Enqueue._fields)] == Enqueue._fields
    assert p.options_rows == [1, 2, 3] and p.tasks == [send.name, other.name, send.name]


def test_separators_inside_arguments_travel_escaped() -> None:
    text = 'rs\x1e nl\n quote" backslash\\'
    p = enqueue_parameters([other.call(1), send.call(text)])
    assert _values(p.args) == [[1], [text]]


def test_arguments_that_are_not_json_text_are_refused() -> None:
    bad = TaskCall("t", b'["a"]\x1e["b"]', b"{}", JobOptions())
    with pytest.raises(asyncjobs.SerializationError, match="not JSON text"):
        enqueue_parameters([bad])
