"""A job's result as stored (no database: the encoding alone). NaN and infinities have no
JSON form, and orjson writes them as null: refused, bare or nested, rather than stored as a
null the job never returned."""

from __future__ import annotations

import math

import pytest

from asyncjobs.errors import SerializationError
from asyncjobs.serialization import encode_result


@pytest.mark.parametrize("value", [math.nan, math.inf, [1.0, -math.inf], {"x": [math.nan]}])
def test_a_non_finite_result_is_refused(value: object) -> None:
    with pytest.raises(SerializationError, match="result of task 'crunch'"):
        encode_result("crunch", value)


@pytest.mark.parametrize("value", [None, [None, 1.5], {"x": None}, "null"])
def test_a_null_result_is_stored_as_it_is(value: object) -> None:
    assert encode_result("crunch", value) is not None
