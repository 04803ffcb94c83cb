"""JSON for arguments and results: orjson, with errors that name what failed."""

from __future__ import annotations

import re
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


def storable(encoded: bytes) -> bool:
    """Whether PostgreSQL can store this JSON (no string in it holds a NUL character)."""
    return b"u0000" not in encoded or _NUL.search(encoded) is None


def without_nul(text: str) -> str:
    """Text as PostgreSQL can store it: a NUL character becomes the four characters \\x00."""
    return text.replace("\x00", "\\x00") if "\x00" in text else text


def dumps(value: Any) -> bytes:
    """Encode one JSON value (raises orjson.JSONEncodeError)."""
    return orjson.dumps(value)


def loads(data: bytes | str) -> Any:
    """Decode one JSON value."""
    return orjson.loads(data)


def encode_arguments(
    task: str, args: Sequence[Any], kwargs: Mapping[str, Any]
) -> tuple[bytes, bytes]:
    """Encode a job's arguments, or raise SerializationError naming the one that can't be."""
    try:
        # orjson takes tuples and lists as they are; no kwargs is the common case.
        encoded_args = orjson.dumps(args if type(args) in (tuple, list) else list(args))
        encoded_kwargs = orjson.dumps(dict(kwargs)) if kwargs else b"{}"
    except (orjson.JSONEncodeError, TypeError):
        pass
    else:
        if storable(encoded_args) and storable(encoded_kwargs):
            return encoded_args, encoded_kwargs
    named = [(f"positional argument {i}", v) for i, v in enumerate(args)]
    named += [(f"argument {k!r}", v) for k, v in kwargs.items()]
    for label, value in named:
        try:
            encoded = orjson.dumps(value)
        except (orjson.JSONEncodeError, TypeError) as exc:
            raise SerializationError(
                f"{label} of task {task!r} cannot be stored as JSON "
                f"({type(value).__name__}: {exc}); pass plain data (str, int, float, bool, "
                "None, list, dict, dataclass, datetime, UUID) and load objects inside the job"
            ) from exc
        if not storable(encoded):
            raise SerializationError(f"{label} of task {task!r} {NUL_HINT}")
    raise SerializationError(f"the arguments of task {task!r} cannot be stored as JSON")


def encode_result(task: str, value: Any) -> bytes:
    """Encode a job's return value, or raise SerializationError saying so."""
    try:
        encoded = orjson.dumps(value)
    except (orjson.JSONEncodeError, TypeError) as exc:
        raise SerializationError(
            f"the result of task {task!r} cannot be stored as JSON "
            f"({type(value).__name__}: {exc}); return plain data or None"
        ) from exc
    if not storable(encoded):
        raise SerializationError(f"the result of task {task!r} {NUL_HINT}")
    return encoded
