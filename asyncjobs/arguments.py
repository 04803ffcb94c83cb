"""Arguments as the types a task's signature names.

A job's arguments are stored as JSON, so a `datetime` travels as its ISO text, a `UUID` or
a `Decimal` as a string, an `Enum` as its value, a dataclass or a pydantic model as an
object. Each parameter gets an `ArgumentType` from its annotation: `check` refuses, at
enqueue, a value that can't become that type, and `load` turns the stored JSON back into
it on the worker. A parameter annotated with a plain JSON type (int, float, str, bool,
None, list, dict, Any) needs no `load`: the worker only runs its `check` (a value enqueued
by name, from SQL or the command line, was checked by nobody). Annotations this module
doesn't know (a class of yours, a Protocol, a TypeVar) are neither checked nor converted:
the value arrives as JSON made it.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import inspect
import sys
import types
import typing
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from .cancel import CancelToken


class _Unconvertible(Exception):
    """A value that can't become the annotated type; its message says why."""


_PLAIN: dict[Any, tuple[type, ...]] = {
    int: (int,),
    float: (int, float),
    str: (str,),
    bool: (bool,),
    list: (list, tuple),
    dict: (dict,),
    type(None): (type(None),),
}


@dataclasses.dataclass(frozen=True, slots=True)
class ArgumentType:
    """What a parameter takes: `check(value)` raises `_Unconvertible` for a value that can't
    be it; `load(value)` (None when the JSON value is already right) makes it from JSON."""

    name: str
    check: Callable[[Any], None]
    load: Callable[[Any], Any] | None


def _accept(_value: Any) -> None:
    return None


_ANYTHING = ArgumentType("anything", _accept, None)


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} ({text})"


def _plain(name: str, accepted: tuple[type, ...]) -> ArgumentType:
    def check(value: Any) -> None:
        if not isinstance(value, accepted):
            raise _Unconvertible(f"must be {name}, got {_describe(value)}")

    return ArgumentType(name, check, None)


def _parsed(name: str, cls: type, parse: Callable[[Any], Any]) -> ArgumentType:
    """A type stored as text (or a number): an instance passes, else its JSON form must parse."""

    def load(value: Any) -> Any:
        if isinstance(value, cls):
            return value
        try:
            return parse(value)
        except (TypeError, ValueError, ArithmeticError) as exc:
            raise _Unconvertible(f"must be {name}, got {_describe(value)}: {exc}") from None

    def check(value: Any) -> None:
        load(value)

    return ArgumentType(name, check, load)


def _parse_date(value: Any) -> datetime.date:
    if not isinstance(value, str):
        raise TypeError("expected a date or its ISO text")
    # A datetime is a date too, and orjson writes it in full.
    if len(value) > 10:
        return datetime.datetime.fromisoformat(value)
    return datetime.date.fromisoformat(value)


def _iso(cls: Any) -> Callable[[Any], Any]:
    def parse(value: Any) -> Any:
        if not isinstance(value, str):
            raise TypeError(f"expected a {cls.__name__} or its ISO text")
        return cls.fromisoformat(value)

    return parse


def _parse_uuid(value: Any) -> uuid.UUID:
    if not isinstance(value, str):
        raise TypeError("expected a UUID or its text")
    return uuid.UUID(value)


def _parse_decimal(value: Any) -> decimal.Decimal:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise TypeError("expected a Decimal, its text or a number")
    # A float goes through its shortest text: Decimal(0.1) would keep the binary error.
    return decimal.Decimal(repr(value) if isinstance(value, float) else value)


def _enum(cls: type[enum.Enum]) -> ArgumentType:
    def parse(value: Any) -> Any:
        return cls(value)

    return _parsed(cls.__name__, cls, parse)


def _dataclass(cls: type, resolving: set[type]) -> ArgumentType:
    hints = _hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.init]
    # A field of the class's own type (a tree) is taken as it comes, not recursed into.
    resolving = resolving | {cls}
    kinds = {f.name: argument_type(hints.get(f.name, Any), resolving) for f in fields}

    def load(value: Any) -> Any:
        if isinstance(value, cls):
            return value
        if not isinstance(value, dict):
            raise _Unconvertible(f"must be {cls.__name__}, got {_describe(value)}")
        unknown = sorted(set(value) - set(kinds))
        if unknown:
            raise _Unconvertible(f"must be {cls.__name__}, which has no field {unknown[0]!r}")
        values = {}
        for key, item in value.items():
            kind = kinds[key]
            try:
                if kind.load is None:
                    kind.check(item)
                    values[key] = item
                else:
                    values[key] = kind.load(item)
            except _Unconvertible as exc:
                raise _Unconvertible(f"field {key!r} of {cls.__name__} {exc}") from None
        try:
            return cls(**values)
        except (TypeError, ValueError) as exc:
            raise _Unconvertible(f"must be {cls.__name__}: {exc}") from None

    def check(value: Any) -> None:
        if not isinstance(value, cls):
            load(value)

    return ArgumentType(cls.__name__, check, load)


def _pydantic_model(annotation: type) -> ArgumentType | None:
    """An ArgumentType for a pydantic model class, if pydantic is installed and it is one."""
    pydantic = sys.modules.get("pydantic")
    if pydantic is None or not issubclass(annotation, pydantic.BaseModel):
        return None  # a model class exists only if pydantic was imported already
    model: Any = annotation

    def load(value: Any) -> Any:
        if isinstance(value, annotation):
            return value
        try:
            return model.model_validate(value)
        except pydantic.ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ())) or "value"
            raise _Unconvertible(
                f"must be {annotation.__name__}: {where}: {first.get('msg')}"
            ) from None

    def check(value: Any) -> None:
        if not isinstance(value, annotation):
            load(value)

    return ArgumentType(annotation.__name__, check, load)


def _union(members: tuple[Any, ...], resolving: set[type]) -> ArgumentType:
    kinds = [argument_type(m, resolving) for m in members]
    name = " | ".join(k.name for k in kinds)
    if all(k.load is None for k in kinds):

        def check_plain(value: Any) -> None:
            for kind in kinds:
                try:
                    kind.check(value)
                except _Unconvertible:
                    continue
                return
            raise _Unconvertible(f"must be {name}, got {_describe(value)}")

        return ArgumentType(name, check_plain, None)

    def load(value: Any) -> Any:
        # An instance of a member wins; else the first member that takes the JSON value.
        for kind in kinds:
            try:
                kind.check(value)
            except _Unconvertible:
                continue
            return kind.load(value) if kind.load is not None else value
        raise _Unconvertible(f"must be {name}, got {_describe(value)}")

    def check(value: Any) -> None:
        load(value)

    return ArgumentType(name, check, load)


def _sequence(origin: type, item: ArgumentType) -> ArgumentType:
    name = f"{origin.__name__}[{item.name}]"
    item_load = item.load

    def check(value: Any) -> None:
        if not isinstance(value, (list, tuple)):
            raise _Unconvertible(f"must be {name}, got {_describe(value)}")
        if item_load is not None:
            for i, element in enumerate(value):
                try:
                    item.check(element)
                except _Unconvertible as exc:
                    raise _Unconvertible(f"item {i} {exc}") from None

    def load(value: Any) -> Any:
        check(value)
        items = value if item_load is None else [item_load(v) for v in value]
        return items if origin is list and type(items) is list else origin(items)

    return ArgumentType(name, check, load if item_load is not None or origin is not list else None)


def _mapping(item: ArgumentType) -> ArgumentType:
    name = f"dict[str, {item.name}]"
    item_load = item.load

    def check(value: Any) -> None:
        if not isinstance(value, dict):
            raise _Unconvertible(f"must be {name}, got {_describe(value)}")
        if item_load is not None:
            for key, element in value.items():
                try:
                    item.check(element)
                except _Unconvertible as exc:
                    raise _Unconvertible(f"key {key!r} {exc}") from None

    def load(value: Any) -> Any:
        check(value)
        assert item_load is not None
        return {k: item_load(v) for k, v in value.items()}

    return ArgumentType(name, check, load if item_load is not None else None)


def _literal(values: tuple[Any, ...]) -> ArgumentType:
    name = " | ".join(repr(v) for v in values)

    def check(value: Any) -> None:
        if value not in values:
            raise _Unconvertible(f"must be one of {name}, got {_describe(value)}")

    return ArgumentType(name, check, None)


_PARSED: dict[Any, ArgumentType] = {
    # datetime before date: a datetime is a date.
    datetime.datetime: _parsed("datetime", datetime.datetime, _iso(datetime.datetime)),
    datetime.date: _parsed("date", datetime.date, _parse_date),
    datetime.time: _parsed("time", datetime.time, _iso(datetime.time)),
    uuid.UUID: _parsed("UUID", uuid.UUID, _parse_uuid),
    decimal.Decimal: _parsed("Decimal", decimal.Decimal, _parse_decimal),
}


def argument_type(annotation: Any, resolving: set[type] | None = None) -> ArgumentType:
    """The ArgumentType of a parameter annotated `annotation` (already resolved)."""
    resolving = resolving or set()
    if annotation is Any or annotation is object or annotation is inspect.Parameter.empty:
        return _ANYTHING
    if annotation is None:
        annotation = type(None)
    plain = _PLAIN.get(annotation)
    if plain is not None:
        return _plain("None" if annotation is type(None) else annotation.__name__, plain)
    parsed = _PARSED.get(annotation)
    if parsed is not None:
        return parsed
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if origin is typing.Union or origin is types.UnionType:
        return _union(arguments, resolving)
    if origin is typing.Literal:
        return _literal(arguments)
    if origin is typing.Annotated:
        return argument_type(arguments[0], resolving)
    if origin in (list, tuple, set, frozenset):
        if origin is tuple and not (len(arguments) == 2 and arguments[1] is Ellipsis):
            # tuple[int, str] and the like: taken as a list would be (not item by item).
            item = _ANYTHING
        else:
            item = argument_type(arguments[0], resolving) if arguments else _ANYTHING
        return _sequence(origin, item)
    if origin is dict:
        return _mapping(argument_type(arguments[1], resolving) if arguments else _ANYTHING)
    if isinstance(annotation, type):
        if annotation in resolving:
            return _ANYTHING
        if issubclass(annotation, enum.Enum):
            return _enum(annotation)
        if dataclasses.is_dataclass(annotation):
            return _dataclass(annotation, resolving)
        model = _pydantic_model(annotation)
        if model is not None:
            return model
        if annotation in (tuple, set, frozenset):
            return _sequence(annotation, _ANYTHING)
    return _ANYTHING


def _hints(obj: Any) -> dict[str, Any]:
    """Resolved annotations, or none if they can't be resolved (a name defined later, a
    typo): an unchecked parameter is better than a task that can't be registered."""
    try:
        return typing.get_type_hints(obj)
    except Exception:
        return {}


class Arguments:
    """The parameters of a task that are checked or converted, by name; built once per task.
    `loads` is empty when no parameter needs converting on the worker."""

    def __init__(self, signature: inspect.Signature, fn: Callable[..., Any]) -> None:
        hints = _hints(fn)
        returned = argument_type(hints.get("return", Any))
        # What the task returns, made from its stored JSON for wait() and get(); None: as is.
        self.load_result = returned.load
        self.kinds: dict[str, ArgumentType] = {}
        self.var_positional: str | None = None
        self.var_keyword: str | None = None
        for param in signature.parameters.values():
            annotation = hints.get(param.name, Any)
            if annotation is CancelToken:
                continue
            kind = argument_type(annotation)
            if param.kind is param.VAR_POSITIONAL:
                self.var_positional = param.name
            elif param.kind is param.VAR_KEYWORD:
                self.var_keyword = param.name
            if kind is not _ANYTHING:
                self.kinds[param.name] = kind
        self.loads = {name: k.load for name, k in self.kinds.items() if k.load is not None}
        names = list(signature.parameters)
        # For positional arguments of a plain signature: each position's name and kind.
        self.by_position = [(n, self.kinds.get(n)) for n in names]

    def _one(self, name: str, value: Any, check: bool) -> Any:
        kind = self.kinds.get(name)
        if kind is None:
            return value
        if name == self.var_positional:
            return tuple(self._item(name, kind, v, check) for v in value)
        if name == self.var_keyword:
            return {k: self._item(name, kind, v, check) for k, v in value.items()}
        return self._item(name, kind, value, check)

    @staticmethod
    def _item(name: str, kind: ArgumentType, value: Any, check: bool) -> Any:
        try:
            if check or kind.load is None:
                kind.check(value)
                return value
            return kind.load(value)
        except _Unconvertible as exc:
            raise TypeError(f"argument {name!r} {exc}") from None

    def check_positional(self, args: tuple[Any, ...] | list[Any]) -> None:
        """Raise TypeError naming the first positional argument (of a plain signature)
        that can't become its parameter's type."""
        for (name, kind), value in zip(self.by_position, args, strict=False):
            if kind is not None:
                try:
                    kind.check(value)
                except _Unconvertible as exc:
                    raise TypeError(f"argument {name!r} {exc}") from None

    def check(self, values: Mapping[str, Any]) -> None:
        """Raise TypeError naming the first of these bound arguments that can't become its
        parameter's type."""
        for name, value in values.items():
            self._one(name, value, check=True)

    def load_positional(self, args: list[Any]) -> None:
        """Convert positional arguments (of a plain signature) in place; TypeError naming
        the first that can't become its parameter's type."""
        for i, (name, kind) in enumerate(self.by_position[: len(args)]):
            if kind is not None:
                args[i] = self._item(name, kind, args[i], check=False)

    def load(self, values: dict[str, Any]) -> None:
        """Convert bound arguments (JSON values, or the objects themselves) in place, and
        check those of plain types (an isinstance each: they need no converting); TypeError
        naming the first that can't become its parameter's type."""
        for name in self.kinds:
            if name in values:
                values[name] = self._one(name, values[name], check=False)
