"""Arguments arrive as the types the task's signature names (datetime, date, time, UUID,
Decimal, Enum, dataclasses, pydantic models, and containers of them); a value that can't
become its parameter's type is refused at enqueue with a TypeError naming it; a job id is
an int that carries the task's return type."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import uuid
from typing import Any

import pydantic
import pytest

import asyncjobs
from asyncjobs.serialization import loads

APP = asyncjobs.App("postgresql://unused")
WHEN = datetime.datetime(2026, 11, 30, 8, 30, tzinfo=datetime.UTC)
ID = uuid.UUID("12345678-1234-5678-1234-567812345678")


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Size(enum.IntEnum):
    S = 1
    L = 3


@dataclasses.dataclass
class Point:
    x: int
    y: int
    at: datetime.date | None = None


@dataclasses.dataclass
class Route:
    name: str
    points: list[Point]


class Order(pydantic.BaseModel):
    id: uuid.UUID
    amount: decimal.Decimal
    placed: datetime.datetime


@APP.task
async def everything(  # noqa: PLR0917  # one of each type, positionally too
    when: datetime.datetime,
    day: datetime.date,
    hour: datetime.time,
    ident: uuid.UUID,
    price: decimal.Decimal,
    color: Color,
    size: Size,
    point: Point,
    order: Order,
) -> None: ...


@APP.task
async def containers(
    days: list[datetime.date],
    by_name: dict[str, uuid.UUID],
    route: Route,
    maybe: datetime.datetime | None = None,
    pair: tuple[int, ...] = (),
) -> None: ...


@APP.task
def with_token(token: asyncjobs.CancelToken, when: datetime.datetime, *more: Color) -> None: ...


@APP.task
async def add(a: int, b: int) -> int:
    return a + b


@APP.task
async def loose(a, b: Any, c: object, d: float, e: str | None = None) -> None:  # type: ignore[no-untyped-def]
    ...


def _stored(call: asyncjobs.TaskCall) -> tuple[list[Any], dict[str, Any]]:
    """What the worker reads back: the call's JSON, decoded."""
    return loads(call.args), loads(call.kwargs)


def _run_bind(task: asyncjobs.Task[Any, Any], call: asyncjobs.TaskCall) -> dict[str, Any]:
    args, kwargs = _stored(call)
    call_args, call_kwargs = task.bind(args, kwargs, asyncjobs.CancelToken())
    names = list(task._full_signature.parameters)
    return {**dict(zip(names, call_args, strict=False)), **call_kwargs}


ORDER = Order(id=ID, amount=decimal.Decimal("10.25"), placed=WHEN)
VALUES: dict[str, Any] = {
    "when": WHEN,
    "day": datetime.date(2026, 1, 2),
    "hour": datetime.time(9, 15, 30),
    "ident": ID,
    "price": decimal.Decimal("1234567890.123456789"),
    "color": Color.BLUE,
    "size": Size.L,
    "point": Point(1, 2, datetime.date(2026, 3, 4)),
    "order": ORDER,
}


@pytest.mark.parametrize("by_keyword", [False, True])
def test_each_common_type_arrives_as_itself(by_keyword: bool) -> None:
    call = everything.call(**VALUES) if by_keyword else everything.call(*VALUES.values())
    bound = _run_bind(everything, call)
    assert bound == VALUES
    for name, value in VALUES.items():
        assert type(bound[name]) is type(value), name


def test_containers_of_them_arrive_converted_item_by_item() -> None:
    route = Route("r", [Point(1, 2), Point(3, 4, datetime.date(2026, 5, 6))])
    call = containers.call([datetime.date(2026, 1, 1)], {"a": ID}, route, maybe=WHEN, pair=(1, 2))
    bound = _run_bind(containers, call)
    assert bound == {
        "days": [datetime.date(2026, 1, 1)],
        "by_name": {"a": ID},
        "route": route,
        "maybe": WHEN,
        "pair": (1, 2),
    }
    assert _run_bind(containers, containers.call([], {}, route)).get("maybe") is None


def test_the_token_and_var_positional_parameters_are_converted_too() -> None:
    call = with_token.call(WHEN, Color.RED, Color.BLUE)
    args, kwargs = _stored(call)
    token = asyncjobs.CancelToken()
    call_args, call_kwargs = with_token.bind(args, kwargs, token)
    assert call_args == [token, WHEN, Color.RED, Color.BLUE]
    assert call_kwargs == {}


def test_their_json_text_is_accepted_as_well() -> None:
    # What `asyncjobs enqueue TASK '[...]'` and a schedule's stored arguments pass.
    texts = {
        "when": WHEN.isoformat(),
        "day": "2026-01-02",
        "hour": "09:15:30",
        "ident": str(ID),
        "price": "1234567890.123456789",
        "color": "blue",
        "size": 3,
        "point": {"x": 1, "y": 2, "at": "2026-03-04"},
        "order": {"id": str(ID), "amount": "10.25", "placed": WHEN.isoformat()},
    }
    assert _run_bind(everything, everything.call(**texts)) == VALUES


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"when": "yesterday"}, "argument 'when' must be datetime, got str ('yesterday')"),
        ({"day": 20260102}, "argument 'day' must be date"),
        ({"ident": "not-a-uuid"}, "argument 'ident' must be UUID"),
        ({"price": "ten"}, "argument 'price' must be Decimal"),
        ({"price": True}, "argument 'price' must be Decimal"),
        ({"color": "green"}, "argument 'color' must be Color"),
        ({"size": 2}, "argument 'size' must be Size"),
        ({"point": {"x": 1}}, "argument 'point' must be Point"),
        ({"point": {"x": 1, "y": "two"}}, "argument 'point' field 'y' of Point must be int"),
        ({"point": {"x": 1, "y": 2, "z": 3}}, "has no field 'z'"),
        ({"order": {"id": "x"}}, "argument 'order' must be Order: id"),
        ({"order": 5}, "argument 'order' must be Order"),
    ],
)
def test_a_value_that_cant_become_its_type_is_refused_at_enqueue(
    change: dict[str, Any], named: str
) -> None:
    with pytest.raises(asyncjobs.ArgumentsMismatch) as caught:
        everything.call(**{**VALUES, **change})
    assert isinstance(caught.value, TypeError)
    assert named in str(caught.value)
    assert "nothing was enqueued" in str(caught.value)


@pytest.mark.parametrize(
    ("call", "named"),
    [
        (lambda: add.call(1, "two"), "argument 'b' must be int, got str ('two')"),
        (lambda: add.call("1", 2), "argument 'a' must be int"),
        (lambda: add.call(1, b=2.5), "argument 'b' must be int, got float"),
        (lambda: add.call(1, None), "argument 'b' must be int, got NoneType"),
        (lambda: containers.call(["2026-13-01"], {}, {"name": "r", "points": []}), "item 0"),
        (lambda: containers.call([], {"a": 1}, {"name": "r", "points": []}), "key 'a'"),
        (lambda: loose.call(1, 2, 3, "four"), "argument 'd' must be float"),
        (lambda: loose.call(1, 2, 3, 4.0, e=5), "argument 'e' must be str | None, got int"),
    ],
)
def test_plain_types_are_checked_too(call: Any, named: str) -> None:
    with pytest.raises(asyncjobs.ArgumentsMismatch, match="nothing was enqueued") as caught:
        call()
    assert named in str(caught.value)


def test_what_fits_still_passes_and_unannotated_parameters_take_anything() -> None:
    assert loads(add.call(1, True).args) == [1, True]  # a bool is an int, as for mypy
    assert loads(loose.call(object.__name__, [1], {"x": None}, 2).args) == [
        "object",
        [1],
        {"x": None},
        2,
    ]
    with pytest.raises(asyncjobs.SerializationError):
        loose.call(object(), 1, 2, 3.0)  # unannotated: still must be JSON


def test_a_task_of_plain_parameters_is_called_with_its_stored_values() -> None:
    assert not add.arguments.loads and not loose.arguments.loads
    assert everything.arguments.loads
    args, kwargs = add.bind([1, 2], {}, asyncjobs.CancelToken())
    assert (args, kwargs) == ([1, 2], {})


def test_a_stored_value_that_no_longer_fits_fails_on_the_worker_with_its_name() -> None:
    with pytest.raises(TypeError, match="argument 'when' must be datetime"):
        stored = loads(everything.call(*VALUES.values()).args)
        everything.bind(["soon", *stored[1:]], {}, asyncjobs.CancelToken())


def test_a_plain_parameter_is_checked_on_the_worker_too() -> None:
    """Stored arguments nobody checked (enqueued by name, from SQL or the command line): a
    plain type is checked as the worker binds them, a typed one converted, and a value that
    fits neither is named; a default is not checked."""
    with pytest.raises(TypeError, match=r"argument 'b' must be int, got str \('two'\)"):
        add.bind([1, "two"], {}, asyncjobs.CancelToken())
    with pytest.raises(TypeError, match="argument 'b' must be int"):
        add.bind([1], {"b": "two"}, asyncjobs.CancelToken())
    with pytest.raises(TypeError, match="argument 'd' must be float"):
        loose.bind([1, 2, 3, "four"], {}, asyncjobs.CancelToken())

    @APP.task(name="mixed")
    async def mixed(n: int, day: datetime.date, *, note: str = 0) -> None:  # type: ignore[assignment]
        ...

    with pytest.raises(TypeError, match="argument 'n' must be int"):
        mixed.bind(["1", "2026-01-02"], {}, asyncjobs.CancelToken())
    # (A keyword-only parameter: inspect's bind, the defaults applied after the check.)
    assert mixed.bind([1, "2026-01-02"], {}, asyncjobs.CancelToken()) == (
        [],
        {"n": 1, "day": datetime.date(2026, 1, 2), "note": 0},
    )


def test_a_direct_call_passes_objects_through() -> None:
    @APP.task(name="direct")
    def direct(when: datetime.datetime, point: Point) -> tuple[datetime.datetime, Point]:
        return when, point

    point = Point(1, 2)
    assert direct(WHEN, point) == (WHEN, point)


async def test_typed_arguments_and_results_through_a_real_worker(
    app: asyncjobs.App, client: asyncjobs.Client
) -> None:
    seen: list[Any] = []

    @app.task
    async def settle(order: Order, due: datetime.date, color: Color, point: Point) -> str:
        seen.append((order, due, color, point))
        return f"{order.amount * 2}"

    @app.task
    async def add_up(a: int, b: int) -> int:
        return a + b

    @app.task
    async def each(  # noqa: PLR0917  # one of each type, as `everything`
        when: datetime.datetime,
        day: datetime.date,
        hour: datetime.time,
        ident: uuid.UUID,
        price: decimal.Decimal,
        color: Color,
        size: Size,
        point: Point,
        order: Order,
        days: list[datetime.date],
        by_name: dict[str, uuid.UUID],
    ) -> None:
        seen.append({k: v for k, v in locals().items() if k != "seen"})

    async with app.worker(concurrency=2):
        job_id = await client.enqueue(
            settle, ORDER, datetime.date(2026, 12, 1), Color.RED, Point(1, 2)
        )
        assert await client.wait(job_id, timeout=30) == "20.50"
        summed = await client.enqueue(add_up, 2, 3)
        assert await client.wait(summed, timeout=30) == 5
        # Every common type through PostgreSQL's jsonb and back, each arriving as itself.
        containers = {"days": [datetime.date(2026, 5, 6)], "by_name": {"a": ID}}
        await client.wait(await client.enqueue(each, **VALUES, **containers), timeout=30)
    assert seen[0] == (ORDER, datetime.date(2026, 12, 1), Color.RED, Point(1, 2))
    assert seen[1] == {**VALUES, **containers}
    assert {k: type(v) for k, v in seen[1].items()} == {
        k: type(v) for k, v in {**VALUES, **containers}.items()
    }
    assert type(seen[1]["days"][0]) is datetime.date
    assert type(seen[1]["by_name"]["a"]) is uuid.UUID
    # A job id is an int at run time: stored, compared and passed back as one.
    assert isinstance(job_id, int) and isinstance(job_id, asyncjobs.JobId)
    assert job_id == int(job_id) and repr(job_id) == str(int(job_id))
    job = await client.get(int(job_id))
    assert job.id == job_id and job.args[0]["amount"] == "10.25"
    with pytest.raises(asyncjobs.ArgumentsMismatch, match="argument 'b' must be int"):
        await client.enqueue(add_up, 1, "two")  # type: ignore[arg-type]


async def test_a_result_comes_back_as_the_type_the_task_returns(
    app: asyncjobs.App, client: asyncjobs.Client
) -> None:
    @app.task
    async def plan(day: datetime.date) -> Point:
        return Point(1, 2, day)

    @app.task
    def price(amount: decimal.Decimal) -> decimal.Decimal:
        return amount * 2

    async with app.worker(concurrency=2):
        planned = await client.enqueue(plan, datetime.date(2026, 12, 24))
        priced = await client.enqueue(price, decimal.Decimal("0.10"))
        assert await client.wait(planned, timeout=30) == Point(1, 2, datetime.date(2026, 12, 24))
        assert await client.wait(priced, timeout=30) == decimal.Decimal("0.20")
    assert (await client.get(planned)).result == Point(1, 2, datetime.date(2026, 12, 24))
    # Stored as JSON: a client without the task reads it as JSON made it.
    other = asyncjobs.App(app.dsn, schema=app.schema)
    async with other.client() as plain:
        assert await plain.wait(priced, timeout=5) == "0.20"
        assert (await plain.get(planned)).result == {"x": 1, "y": 2, "at": "2026-12-24"}


async def test_a_wrong_type_enqueued_from_sql_fails_at_once_naming_it(
    app: asyncjobs.App, client: asyncjobs.Client, admin: Any, schema: str
) -> None:
    """The SQL enqueue (as `asyncjobs enqueue` without --app, or a client without the task)
    can't check a value against the function: the worker does, and fails the job at once,
    with no retry, instead of running it into a TypeError three times."""

    @app.task(name="adder", max_attempts=3)
    async def adder(a: int, b: int) -> int:
        return a + b

    async with app.worker():
        job_id = await admin.fetchval(
            f"""SELECT "{schema}".enqueue('adder', args => '[1, "two"]')"""
        )
        with pytest.raises(asyncjobs.JobFailed) as failed:
            await client.wait(job_id, timeout=30)
        right = await admin.fetchval(f"""SELECT "{schema}".enqueue('adder', args => '[1, 2]')""")
        assert await client.wait(right, timeout=30) == 3
    assert "argument 'b' must be int, got str ('two')" in str(failed.value)
    job = await client.get(job_id)
    assert (job.state, job.attempt) == (asyncjobs.JobState.FAILED, 1)
