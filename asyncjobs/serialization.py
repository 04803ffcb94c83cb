"""JSON for arguments and results: orjson, with errors that name what failed."""

from __future__ import annotations

import dataclasses
import decimal
import math
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from .errors import SerializationError

# The NUL character, which orjson writes as \u0000 in a string: PostgreSQL's jsonb (and
# text) cannot hold it. \u0000 after an odd number of backslashes; after an even number it
# is a backslash and the text "u0000".
_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
NUL_HINT = (
    "holds a NUL character ('\\x00'), which PostgreSQL cannot store; remove it, or pass "
    "binary data as base64"
)


class UnreadableJson(str):
    """A stored JSON value orjson can't read, as its text: a number beyond a float's range
    or nesting deeper than 1024, which only plain SQL (or the SQL function `enqueue`) can
    write. Read this way, such a row fails its own job instead of every read around it."""


def storable(encoded: bytes) -> bool:
    """Whether PostgreSQL can store this JSON (no string in it holds a NUL character)."""
    return b"u0000" not in encoded or _NUL.search(encoded) is None


NON_FINITE_HINT = (
    "is or holds a NaN or infinite float, which JSON cannot hold (it would be stored as "
    "null); pass a finite number, None, or a string such as 'inf'"
)


def has_non_finite(value: Any, depth: int = 0) -> bool:
    """Whether `value` is or holds (in lists, tuples, dicts or dataclasses) a NaN or an
    infinite float: orjson writes those as null, which would change the data silently."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if depth > 256:  # orjson refuses deeper data itself
        return False
    if isinstance(value, (list, tuple)):
        return any(has_non_finite(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return any(has_non_finite(v, depth + 1) for v in value.values())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return any(
            has_non_finite(getattr(value, f.name), depth + 1) for f in dataclasses.fields(value)
        )
    return False


def faithful(encoded: bytes, value: Any) -> bool:
    """Whether `encoded` (orjson's text of `value`) can be stored and reads back as `value`:
    no NUL in a string, no NaN or infinity turned into null. Cheap for the common case:
    a non-finite float can only be behind a null."""
    return storable(encoded) and (b"null" not in encoded or not has_non_finite(value))


def without_nul(text: str) -> str:
    """Text as PostgreSQL can store it: a NUL character becomes the four characters \\x00,
    and a lone surrogate (from bytes decoded with surrogateescape, say) its \\udcXX escape."""
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    try:
        text.encode()
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode()
    return text


def to_json(value: Any) -> Any:
    """What orjson can't write itself, as JSON (its `default=`): a Decimal as its exact
    text, a pydantic model as its JSON-mode dump. Anything else raises TypeError."""
    if isinstance(value, decimal.Decimal):
        return str(value)
    pydantic = sys.modules.get("pydantic")  # a model exists only if pydantic was imported
    if pydantic is not None and isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def dumps(value: Any) -> bytes:
    """Encode one JSON value (raises orjson.JSONEncodeError)."""
    return orjson.dumps(value)


def loads(data: bytes | str) -> Any:
    """Decode one JSON value."""
    return orjson.loads(data)


# A job's arguments, as JSON, are refused past this (as a result is, worker/runner.py): a
# job row is no place for bulk data, and PostgreSQL refuses a jsonb value over 256 MB.
MAX_ARGUMENTS_BYTES = 64 * 1024 * 1024


def arguments_too_big(task: str, size: int) -> SerializationError:
    """The error for arguments of `task` that are `size` bytes of JSON (over the limit)."""
    return SerializationError(
        f"the arguments of task {task!r} are {size} bytes of JSON, over the limit of "
        f"{MAX_ARGUMENTS_BYTES}; nothing was stored: keep large data elsewhere (a file, "
        "object storage, a table of yours) and pass a reference to it"
    )


def encode_arguments(
    task: str, args: Sequence[Any], kwargs: Mapping[str, Any]
) -> tuple[bytes, bytes]:
    """Encode a job's arguments, or raise SerializationError naming the one that can't be."""
    try:
        # orjson takes tuples and lists as they are; no kwargs is the common case.
        encoded_args = orjson.dumps(
            args if type(args) in (tuple, list) else list(args), default=to_json
        )
        encoded_kwargs = orjson.dumps(dict(kwargs), default=to_json) if kwargs else b"{}"
    except (orjson.JSONEncodeError, TypeError):
        pass
    else:
        if faithful(encoded_args, args) and faithful(encoded_kwargs, kwargs):
            return encoded_args, encoded_kwargs
    named = [(f"positional argument {i}", v) for i, v in enumerate(args)]
    named += [(f"argument {k!r}", v) for k, v in kwargs.items()]
    for label, value in named:
        try:
            encoded = orjson.dumps(value, default=to_json)
        except (orjson.JSONEncodeError, TypeError) as exc:
            raise SerializationError(
                f"{label} of task {task!r} cannot be stored as JSON "
                f"({type(value).__name__}: {exc}); pass plain data (str, int, float, bool, "
                "None, list, dict, dataclass, datetime, date, time, UUID, Decimal, Enum, pydantic "
                "model) and load objects inside the job"
            ) from exc
        if not storable(encoded):
            raise SerializationError(f"{label} of task {task!r} {NUL_HINT}")
        if has_non_finite(value):
            raise SerializationError(f"{label} of task {task!r} {NON_FINITE_HINT}")
    raise SerializationError(f"the arguments of task {task!r} cannot be stored as JSON")


def encode_result(task: str, value: Any) -> bytes:
    """Encode a job's return value, or raise SerializationError saying so."""
    try:
        encoded = orjson.dumps(value, default=to_json)
    except (orjson.JSONEncodeError, TypeError) as exc:
        raise SerializationError(
            f"the result of task {task!r} cannot be stored as JSON "
            f"({type(value).__name__}: {exc}); return plain data or None"
        ) from exc
    if not storable(encoded):
        raise SerializationError(f"the result of task {task!r} {NUL_HINT}")
    if value is not None and b"null" in encoded and has_non_finite(value):
        raise SerializationError(f"the result of task {task!r} {NON_FINITE_HINT}")
    return encoded


# A checkpoint is where a job is, not its data: a larger one is refused at the call. (Each
# is written as a whole, and read back by every attempt's start.)
MAX_CHECKPOINT_BYTES = 1024 * 1024


def encode_checkpoint(value: Any) -> bytes:
    """Encode a job's checkpoint, or raise SerializationError saying what is wrong."""
    try:
        encoded = orjson.dumps(value)
    except (orjson.JSONEncodeError, TypeError) as exc:
        raise SerializationError(
            f"a checkpoint must be JSON: {type(value).__name__} cannot be stored ({exc}); "
            "save plain data (str, int, float, bool, None, list, dict, dataclass, datetime, "
            "UUID) that says where the job is"
        ) from exc
    if not storable(encoded):
        raise SerializationError(f"the checkpoint {NUL_HINT}")
    if b"null" in encoded and has_non_finite(value):
        raise SerializationError(f"the checkpoint {NON_FINITE_HINT}")
    if len(encoded) > MAX_CHECKPOINT_BYTES:
        raise SerializationError(
            f"the checkpoint is {len(encoded)} bytes of JSON, over the limit of "
            f"{MAX_CHECKPOINT_BYTES}: save where the job is (an offset, the last id done), "
            "and keep the data itself elsewhere (a table of yours, object storage)"
        )
    return encoded
