"""Fitting arguments to a task's signature (no database): `Task.call` refuses what the
function can't take before anything is stored, and `Task.bind` gives the worker the
arguments to call it with, the cancel token put in place."""

from __future__ import annotations

from typing import Any

import pytest

import asyncjobs
from asyncjobs.serialization import loads

APP = asyncjobs.App("postgresql://unused")


@APP.task
async def plain(a: int, b: int = 2, c: int = 3) -> None: ...


@APP.task
def with_token(x: int, token: asyncjobs.CancelToken) -> None: ...


@APP.task
def token_first(token: asyncjobs.CancelToken, x: int, y: int = 0) -> None: ...


@APP.task
async def flexible(a: int, /, b: int, *rest: int, c: int = 0, **extra: Any) -> None: ...


def test_plain_signatures_are_checked_as_bind_would() -> None:
    fine: list[tuple[tuple[int, ...], dict[str, int]]] = [
        ((1,), {}),
        ((1, 2, 3), {}),
        ((), {"a": 1}),
        ((1,), {"c": 5}),
        ((), {"c": 1, "a": 2, "b": 3}),
    ]
    wrong: list[tuple[tuple[int, ...], dict[str, int]]] = [
        ((), {}),
        ((1, 2, 3, 4), {}),
        ((1,), {"a": 1}),
        ((1,), {"d": 1}),
        ((), {"b": 1}),
    ]
    for args, kwargs in fine:
        assert plain.call(*args, **kwargs).task == plain.name
    for args, kwargs in wrong:
        with pytest.raises(TypeError, match=r"task .*plain"):
            plain.call(*args, **kwargs)


def test_a_call_holds_its_arguments_as_json_text() -> None:
    call = plain.call(1, c=5)
    assert (call.task, loads(call.args), loads(call.kwargs)) == (plain.name, [1], {"c": 5})
    assert plain.call(7).kwargs == b"{}"
    assert call.options is plain.defaults


def test_a_misspelt_keyword_is_named() -> None:
    with pytest.raises(asyncjobs.ArgumentsMismatch, match="unexpected keyword argument 'cc'"):
        plain.call(1, cc=3)  # type: ignore[call-arg]


def test_the_token_is_not_an_argument_of_the_call() -> None:
    assert with_token.call(1).args == b"[1]"
    with pytest.raises(TypeError):
        with_token.call(1, 2)  # type: ignore[call-arg]
    assert token_first.call(5, y=1).args == b"[5]"


def test_bind_puts_the_token_in_place() -> None:
    token = asyncjobs.CancelToken()
    assert plain.bind([1], {}, token) == ([1], {})
    assert with_token.bind([1], {}, token) == ([1], {"token": token})
    # A token before the arguments: everything goes by keyword.
    assert token_first.bind([5], {"y": 1}, token) == ([], {"token": token, "x": 5, "y": 1})


def test_bind_handles_every_kind_of_parameter() -> None:
    token = asyncjobs.CancelToken()
    args, kwargs = flexible.bind([1, 2, 3, 4], {"c": 5, "z": 6}, token)
    assert args == [1, 2, 3, 4]
    assert kwargs == {"c": 5, "z": 6}
    args, kwargs = flexible.bind([1], {"b": 2}, token)
    # With *rest in the signature, b goes by position (as Python would pass it).
    assert (args, kwargs) == ([1, 2], {"c": 0})


def test_bind_refuses_stored_arguments_that_no_longer_fit() -> None:
    token = asyncjobs.CancelToken()
    for args, kwargs in [([], {}), ([1, 2, 3, 4], {}), ([1], {"nope": 1})]:
        with pytest.raises(TypeError):
            plain.bind(args, kwargs, token)
