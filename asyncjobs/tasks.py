"""Tasks: the functions jobs run, their default options, and calls ready to enqueue."""

from __future__ import annotations

import copy
import dataclasses
import datetime
import functools
import inspect
import re
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from typing import Any, Generic, Literal, NamedTuple, ParamSpec, TypeVar, overload

import orjson

from . import validation
from .arguments import Arguments
from .cancel import CancelToken
from .errors import ArgumentsMismatch, ConfigurationError
from .retry import Backoff, ExceptionTypes, validate_backoff
from .serialization import encode_arguments, faithful

P = ParamSpec("P")
R = TypeVar("R")
# A Task only gives its R back, so it is covariant: pyright types an async function's
# result as `types.CoroutineType[...]`, which the client's overload for async tasks
# (`Task[P, Coroutine[Any, Any, T]]`) then still matches, as mypy's `Coroutine` does.
R_co = TypeVar("R_co", covariant=True)

# No whitespace, '@' or ',' : queue names travel in NOTIFY payloads ("emails@<epoch>").
_QUEUE_NAME = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")
# A btree entry must fit in a third of a page; keys are meant to be short anyway.
MAX_UNIQUE_KEY = 512
MAX_TASK_NAME = 1000
OnDuplicate = Literal["existing", "raise"]
OnParentFailure = Literal["cancel", "run"]


def validate_queue(queue: str) -> str:
    """Return `queue` if it is a valid queue name, else raise ConfigurationError."""
    if not isinstance(queue, str) or not _QUEUE_NAME.fullmatch(queue):
        raise ConfigurationError(
            f"invalid queue name {queue!r}: use 1-64 letters, digits, '_', '.', ':' or '-'"
        )
    return queue


@dataclasses.dataclass(frozen=True, slots=True)
class JobOptions:
    """How a job is queued and run; a task's defaults, overridable per call."""

    queue: str = "default"
    priority: int = 0
    max_attempts: int = 3
    timeout: float | None = None
    delay: float | None = None
    run_at: datetime.datetime | None = None
    # A per-call backoff, stored on the job row; None: the task's.
    backoff: Backoff | None = None
    unique_key: str | None = None
    on_duplicate: OnDuplicate = "existing"
    after: tuple[int, ...] = ()
    on_parent_failure: OnParentFailure = "cancel"

    def __post_init__(self) -> None:
        validate_queue(self.queue)
        validation.integer("priority", self.priority, -validation.INT32, validation.INT32)
        validation.integer("max_attempts", self.max_attempts, 1, validation.INT32)
        if self.timeout is not None:
            validation.seconds("timeout", self.timeout, zero=False)
        if self.delay is not None:
            validation.seconds("delay", self.delay, most=validation.MAX_DELAY)
        if self.run_at is not None:
            validation.aware_datetime("run_at", self.run_at)
            if self.delay is not None:
                raise ConfigurationError("pass delay or run_at, not both")
        validate_backoff(self.backoff)
        if self.unique_key is not None:
            validation.text("unique_key", self.unique_key, most=MAX_UNIQUE_KEY)
        if self.on_duplicate not in ("existing", "raise"):
            raise ConfigurationError(
                f"on_duplicate must be 'existing' (return the active job's id) or 'raise', "
                f"got {self.on_duplicate!r}"
            )
        for parent in self.after:
            validation.job_id(parent)
        if self.on_parent_failure not in ("cancel", "run"):
            raise ConfigurationError(
                "on_parent_failure must be 'cancel' (the default) or 'run' (run anyway), "
                f"got {self.on_parent_failure!r}"
            )


def validate_task_name(name: object) -> str:
    """Return `name` if it can name a task, else raise ConfigurationError."""
    return validation.text(
        "task name", name, most=MAX_TASK_NAME, hint="; name tasks like 'module.function'"
    )


def _job_ids(value: int | Iterable[int] | None) -> tuple[int, ...] | None:
    """`after=` as a sorted tuple of distinct ids (one id or an iterable of them)."""
    if value is None:
        return None
    if isinstance(value, (str, bytes)):
        raise ConfigurationError(f"after must be a job id or job ids, got {value!r}")
    ids = (value,) if isinstance(value, int) else tuple(value)
    if not ids:
        raise ConfigurationError("after needs at least one job id (or leave it out)")
    if not all(validation.is_int(i) for i in ids):
        raise ConfigurationError(f"after must be job ids (integers), got {value!r}")
    return tuple(sorted(set(ids)))


def _seconds(value: float | datetime.timedelta | None) -> float | None:
    return value.total_seconds() if isinstance(value, datetime.timedelta) else value


class TaskCall(NamedTuple, Generic[R_co]):
    """One job ready to enqueue: a task name, encoded arguments and options; typed, for
    type checkers only, with what the task returns (so `enqueue_many` gives typed ids). A
    named tuple because a batch makes thousands, and a frozen dataclass took as long to make
    as the rest of `Task.call` (figures: benchmarks/README.md)."""

    task: str
    args: bytes
    kwargs: bytes
    options: JobOptions


# TaskCall(...) without the Python-level __new__ of a named tuple: less than half the time.
_make_call = functools.partial(tuple.__new__, TaskCall)


def _token_parameter(fn: Callable[..., Any]) -> str | None:
    """The name of `fn`'s parameter annotated `CancelToken`, if it has one."""
    for param in inspect.signature(fn).parameters.values():
        annotation = param.annotation
        if annotation is CancelToken or (
            isinstance(annotation, str) and annotation.split(".")[-1] == "CancelToken"
        ):
            return param.name
    return None


@dataclasses.dataclass(frozen=True, slots=True)
class _PlainSignature:
    """A signature of plain parameters only (no *args, **kwargs, positional- or
    keyword-only), checked without inspect's Signature.bind, which is most of the cost of
    enqueueing. `fits` says yes only when bind would succeed; on no, bind gives the error."""

    index: dict[str, int]
    required: tuple[str, ...]  # plain parameters without a default come first

    @classmethod
    def of(cls, signature: inspect.Signature) -> _PlainSignature | None:
        params = list(signature.parameters.values())
        if any(p.kind is not p.POSITIONAL_OR_KEYWORD for p in params):
            return None
        required = tuple(p.name for p in params if p.default is p.empty)
        return cls({p.name: i for i, p in enumerate(params)}, required)

    def fits(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> bool:
        given = len(args)
        if given > len(self.index):
            return False
        if not kwargs:  # the common call: positional arguments only
            return given >= len(self.required)
        for name in kwargs:
            if self.index.get(name, -1) < given:
                return False
        return all(name in kwargs for name in self.required[given:])


class Task(Generic[P, R_co]):
    """A function registered with `@app.task`; enqueue it with `client.enqueue(task, ...)`."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str,
        options: JobOptions,
        backoff: Backoff,
        retry_on: ExceptionTypes = (Exception,),
        fail_on: ExceptionTypes = (),
        hand_off_after: float | None = None,
    ) -> None:
        self.fn = fn
        # Seconds its jobs run under their claim (None: the worker's setting).
        self.hand_off_after = hand_off_after
        self.name = validate_task_name(name)
        self.defaults = options
        self.backoff = backoff
        self.retry_on = retry_on
        self.fail_on = fail_on
        self.is_async = inspect.iscoroutinefunction(fn)
        self.token_parameter = _token_parameter(fn)
        full = inspect.signature(fn)
        self._full_signature = full
        # What callers pass: the signature without the token the worker injects.
        self.signature = full.replace(
            parameters=[p for p in full.parameters.values() if p.name != self.token_parameter]
        )
        self._plain = _PlainSignature.of(self.signature)
        # The parameters whose annotations are checked at enqueue and converted on the worker.
        self.arguments = Arguments(self.signature, fn)
        self._checked = bool(self.arguments.kinds)
        # Stored arguments of a plain signature are passed as they are when they fit (the
        # worker's fast path); the token then goes by keyword, so it must come last.
        self._pass_through = self._plain is not None and (
            self.token_parameter is None or list(full.parameters)[-1] == self.token_parameter
        )

    def __repr__(self) -> str:
        return f"<Task {self.name}>"

    def retries(self, exc: BaseException) -> bool:
        """Whether an attempt that raised `exc` may be retried (attempts allowing).

        `fail_on` wins over `retry_on`, so `retry_on=OSError, fail_on=FileNotFoundError`
        retries every OSError but that one.
        """
        return not isinstance(exc, self.fail_on) and isinstance(exc, self.retry_on)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co:
        """Run the function directly, in this process (a never-set token if it takes one)."""
        call_args, call_kwargs = self.bind(args, kwargs, CancelToken())
        result: R_co = self.fn(*call_args, **call_kwargs)
        return result

    def options(
        self,
        *,
        queue: str | None = None,
        priority: int | None = None,
        max_attempts: int | None = None,
        timeout: float | datetime.timedelta | None = None,
        delay: float | datetime.timedelta | None = None,
        run_at: datetime.datetime | None = None,
        retry: Backoff | None = None,
        unique_key: str | None = None,
        on_duplicate: OnDuplicate | None = None,
        after: int | Iterable[int] | None = None,
        on_parent_failure: OnParentFailure | None = None,
    ) -> Task[P, R_co]:
        """This task with other options for the jobs enqueued through it.

        `await client.enqueue(send_email.options(delay=60, priority=5), "a@example.com")`

        `retry=Backoff(...)` is stored with the job, so the worker uses it instead of the
        task's; which exceptions retry stays the task's (`retry_on`, `fail_on`).
        `unique_key`: while a job of this task with this key is scheduled, queued, awaiting
        or processing, enqueueing another returns that job's id (`on_duplicate="raise"`:
        raises DuplicateJob). `after`: a job id or ids; the job waits in `awaiting` until
        every one of them succeeded, and is cancelled if one fails, is cancelled or
        deleted (`on_parent_failure="run"`: it runs once they have all finished).
        """
        changes: dict[str, Any] = {
            "queue": queue,
            "priority": priority,
            "max_attempts": max_attempts,
            "timeout": _seconds(timeout),
            "delay": _seconds(delay),
            "run_at": run_at,
            "backoff": retry,
            "unique_key": unique_key,
            "on_duplicate": on_duplicate,
            "after": _job_ids(after),
            "on_parent_failure": on_parent_failure,
        }
        options = dataclasses.replace(
            self.defaults, **{k: v for k, v in changes.items() if v is not None}
        )
        # A copy, not a new Task: the signature and the argument types are the same, and
        # reading them again (get_type_hints) cost ~0.1 ms per call.
        task = copy.copy(self)
        task.defaults = options
        return task

    @overload
    def call(
        self: Task[P, Coroutine[Any, Any, R]], *args: P.args, **kwargs: P.kwargs
    ) -> TaskCall[R]: ...
    @overload
    def call(self: Task[P, R], *args: P.args, **kwargs: P.kwargs) -> TaskCall[R]: ...

    def call(self, *args: Any, **kwargs: Any) -> TaskCall[Any]:
        """A job of this task with these arguments, for `client.enqueue_many()`, typed with
        what the task returns (an async task's awaited result).

        Raises TypeError if the arguments don't fit the task's signature and
        SerializationError (a TypeError) if they can't be stored as JSON.
        """
        plain = self._plain
        if not kwargs and plain is not None and plain.fits(args, kwargs):
            if self._checked:
                self._check(self.arguments.check_positional, args)
            # The common call, encoded inline (a batch makes thousands).
            try:
                encoded = orjson.dumps(args)
            except (orjson.JSONEncodeError, TypeError):
                pass  # encode_arguments below names the argument, or encodes it
            else:
                if faithful(encoded, args):
                    return _make_call((self.name, encoded, b"{}", self.defaults))
        elif plain is None or not plain.fits(args, kwargs):
            try:
                bound = self.signature.bind(*args, **kwargs)
            except TypeError as exc:
                raise ArgumentsMismatch(
                    f"task {self.name!r}: {self._misfit(kwargs) or exc}; nothing was enqueued"
                ) from None
            if self._checked:
                self._check(self.arguments.check, bound.arguments)
        elif self._checked:
            self._check(self.arguments.check_positional, args)
            self._check(self.arguments.check, kwargs)
        encoded_args, encoded_kwargs = encode_arguments(self.name, args, kwargs)
        return TaskCall(self.name, encoded_args, encoded_kwargs, self.defaults)

    def _check(self, check: Callable[[Any], None], values: Any) -> None:
        try:
            check(values)
        except TypeError as exc:
            raise ArgumentsMismatch(f"task {self.name!r}: {exc}; nothing was enqueued") from None

    def _misfit(self, kwargs: Mapping[str, Any]) -> str | None:
        """The keyword arguments the signature has no place for, named: bind() would
        report a missing argument first, which hides the misspelt one."""
        params = self.signature.parameters
        if any(p.kind is p.VAR_KEYWORD for p in params.values()):
            return None
        unknown = [
            name
            for name in kwargs
            if name not in params or params[name].kind is inspect.Parameter.POSITIONAL_ONLY
        ]
        if not unknown:
            return None
        names = ", ".join(repr(n) for n in unknown)
        return f"unexpected keyword argument{'s' if len(unknown) > 1 else ''} {names}"

    def bind(
        self, args: Sequence[Any], kwargs: Mapping[str, Any], token: CancelToken
    ) -> tuple[list[Any], dict[str, Any]]:
        """The positional and keyword arguments to call `fn` with, the token put in place.

        Raises TypeError when stored arguments don't fit the function (a corrupt row, a
        signature changed since the job was enqueued, or a value that can't become its
        parameter's type: enqueued by name, from SQL or the command line, it was not
        checked against the annotations).
        """
        if self._pass_through and self._plain is not None and self._plain.fits(args, kwargs):
            given = list(args)
            passed = dict(kwargs)
            if self._checked:
                self.arguments.load_positional(given)
                self.arguments.load(passed)
            if self.token_parameter is not None:
                passed[self.token_parameter] = token
            return given, passed
        bound = self.signature.bind(*args, **kwargs)
        if self._checked:
            self.arguments.load(bound.arguments)  # what was given, not the defaults
        bound.apply_defaults()
        values = dict(bound.arguments)
        if self.token_parameter is not None:
            values[self.token_parameter] = token
        call_args: list[Any] = []
        call_kwargs: dict[str, Any] = {}
        params = list(self._full_signature.parameters.values())
        positional = any(p.kind is p.VAR_POSITIONAL for p in params)
        for param in params:
            if param.name not in values:
                continue
            value = values[param.name]
            if param.kind is param.VAR_POSITIONAL:
                call_args.extend(value)
                positional = False
            elif param.kind is param.VAR_KEYWORD:
                call_kwargs.update(value)
            elif param.kind is param.POSITIONAL_ONLY or (
                positional and param.kind is param.POSITIONAL_OR_KEYWORD
            ):
                call_args.append(value)
            else:
                call_kwargs[param.name] = value
        return call_args, call_kwargs


def task_name(fn: Callable[..., Any]) -> str:
    """The default name of a task: the function's module and qualified name."""
    return f"{fn.__module__}.{fn.__qualname__}"
