"""JSON for arguments and results: orjson, with errors that name what failed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from .errors import SerializationError


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
        return encoded_args, encoded_kwargs
    named = [(f"positional argument {i}", v) for i, v in enumerate(args)]
    named += [(f"argument {k!r}", v) for k, v in kwargs.items()]
    for label, value in named:
        try:
            orjson.dumps(value)
        except (orjson.JSONEncodeError, TypeError) as exc:
            raise SerializationError(
                f"{label} of task {task!r} cannot be stored as JSON "
                f"({type(value).__name__}: {exc}); pass plain data (str, int, float, bool, "
                "None, list, dict, dataclass, datetime, UUID) and load objects inside the job"
            ) from exc
    raise SerializationError(f"the arguments of task {task!r} cannot be stored as JSON")


def encode_result(task: str, value: Any) -> bytes:
    """Encode a job's return value, or raise SerializationError saying so."""
    try:
        return orjson.dumps(value)
    except (orjson.JSONEncodeError, TypeError) as exc:
        raise SerializationError(
            f"the result of task {task!r} cannot be stored as JSON "
            f"({type(value).__name__}: {exc}); return plain data or None"
        ) from exc
