"""Jobs that fail: errors and retries, timeouts, unknown tasks, corrupt arguments, results
and arguments that can't be stored, outcomes the database refuses, against real PostgreSQL."""

from __future__ import annotations

import anyio
import asyncpg
import pytest

import asyncjobs


async def test_failing_job_retries_then_fails_with_every_error(
    app: asyncjobs.App, client: asyncjobs.Client
) -> None:
    @app.task(max_attempts=3, retry=asyncjobs.Backoff(base=0.01))
    async def broken() -> None:
        raise ValueError("nope")

    job_id = await client.enqueue(broken)
    async with app.worker():
        with pytest.raises(asyncjobs.JobFailed) as failed:
            await client.wait(job_id, timeout=20)
    assert failed.value.error["type"] == "ValueError"
    job = await client.get(job_id)
    assert job.state is asyncjobs.JobState.FAILED and job.attempt == 3
    assert [e["attempt"] for e in job.errors] == [1, 2, 3]
    assert "ValueError: nope" in job.errors[0]["traceback"]


async def test_timeout_fails_the_attempt(app: asyncjobs.App, client: asyncjobs.Client) -> None:
    @app.task(timeout=0.2, max_attempts=1)
    async def slow() -> None:
        await anyio.sleep(30)

    job_id = await client.enqueue(slow)
    async with app.worker():
        with pytest.raises(asyncjobs.JobFailed, match="timeout"):
            await client.wait(job_id, timeout=10)


async def test_unknown_task_fails_that_job_clearly(
    app: asyncjobs.App, client: asyncjobs.Client
) -> None:
    @app.task(max_attempts=1)
    async def fine() -> str:
        return "ok"

    client.allow_unknown_tasks = True  # else refused here, before any worker sees it
    ghost = await client.enqueue("no.such.task", 1)
    good = await client.enqueue(fine)
    async with app.worker(queues=["default"]):
        assert await client.wait(good, timeout=10) == "ok"
        with pytest.raises(asyncjobs.JobFailed, match=r"no task named 'no\.such\.task'"):
            await client.wait(ghost, timeout=30)


async def test_corrupt_arguments_fail_that_job_only(
    app: asyncjobs.App, client: asyncjobs.Client, admin: asyncpg.Connection, schema: str
) -> None:
    @app.task
    async def takes_two(a: int, b: int) -> int:
        return a + b

    bad = await client.enqueue(takes_two, 1, 2)
    await admin.execute(f'UPDATE "{schema}".jobs SET args = \'"not a list"\' WHERE id = $1', bad)
    wrong = await client.enqueue(takes_two, 1, 2)
    await admin.execute(f"UPDATE \"{schema}\".jobs SET args = '[1, 2, 3]' WHERE id = $1", wrong)
    good = await client.enqueue(takes_two, 1, 2)
    async with app.worker():
        assert await client.wait(good, timeout=10) == 3
        for job_id in (bad, wrong):
            with pytest.raises(asyncjobs.JobFailed, match="don't fit"):
                await client.wait(job_id, timeout=10)
            assert (await client.get(job_id)).attempt == 1  # not retried


async def test_unserializable_arguments_name_the_argument_and_store_nothing(
    app: asyncjobs.App, client: asyncjobs.Client, admin: asyncpg.Connection, schema: str
) -> None:
    @app.task
    async def send(to: object, *, attachment: object) -> None: ...  # any JSON: see the set below

    with pytest.raises(TypeError, match="argument 'attachment'") as raised:
        await client.enqueue(send, "a@example.com", attachment=object())
    assert isinstance(raised.value, asyncjobs.SerializationError)
    with pytest.raises(TypeError, match="positional argument 0") as raised:
        await client.enqueue(send, {1, 2}, attachment=None)  # type: ignore[arg-type]
    assert isinstance(raised.value, asyncjobs.SerializationError)
    with pytest.raises(TypeError, match="missing a required argument"):
        await client.enqueue(send, "a@example.com")  # type: ignore[call-arg]
    assert await admin.fetchval(f'SELECT count(*) FROM "{schema}".jobs') == 0


async def test_unserializable_result_fails_the_job(
    app: asyncjobs.App, client: asyncjobs.Client
) -> None:
    @app.task
    async def gives_object() -> object:
        return object()

    job_id = await client.enqueue(gives_object)
    async with app.worker():
        with pytest.raises(asyncjobs.JobFailed, match="result of task"):
            await client.wait(job_id, timeout=10)


async def test_nul_characters_are_refused_up_front_or_shown_never_wedging_the_worker(
    app: asyncjobs.App, client: asyncjobs.Client, admin: asyncpg.Connection, schema: str
) -> None:
    # PostgreSQL's jsonb and text cannot hold U+0000. A value that has one must not reach
    # the worker's one writer, where a refused write once blocked every later outcome.
    @app.task
    async def echo(text: str, *, fail: bool = False) -> str:
        job = asyncjobs.current_job()
        job.progress(0.5, "half\x00way")
        job.log("line\x00one")
        if fail:
            raise ValueError("bad\x00value")
        return text

    @app.task
    async def gives_nul() -> str:
        return "a\x00b"

    with pytest.raises(asyncjobs.SerializationError, match=r"positional argument 0 .* NUL"):
        await client.enqueue(echo, "a\x00b")
    with pytest.raises(asyncjobs.SerializationError, match=r"argument 'text' .* NUL"):
        await client.enqueue(echo, text="a\x00b")
    # The text \u0000 (backslash, u, 0000) is not a NUL character.
    assert await client.enqueue(echo, "\\u0000") > 0
    nul_result = await client.enqueue(gives_nul)
    failing = await client.enqueue(echo.options(max_attempts=1), "x", fail=True)
    fine = await client.enqueue(echo, "fine")
    async with app.worker():
        with pytest.raises(asyncjobs.JobFailed, match=r"result of task .* NUL"):
            await client.wait(nul_result, timeout=10)
        with pytest.raises(asyncjobs.JobFailed, match=r"bad\\x00value"):
            await client.wait(failing, timeout=10)
        assert await client.wait(fine, timeout=10) == "fine"
    job = await client.get(fine)
    assert job.progress_message == "half\\x00way"
    assert [line["message"] for line in job.log] == ["line\\x00one"]


async def test_an_outcome_the_database_refuses_fails_that_job_alone(
    app: asyncjobs.App, client: asyncjobs.Client, admin: asyncpg.Connection, schema: str
) -> None:
    # Outcomes are written many per statement. One the database refuses (here a constraint
    # stands in for any refusal) must not hold back the others, nor the worker's shutdown.
    @app.task
    async def give(value: str) -> str:
        await anyio.sleep(0.05)
        return value

    await admin.execute(
        f'ALTER TABLE "{schema}".jobs ADD CONSTRAINT no_poison'
        " CHECK (result IS NULL OR result <> '\"poison\"'::jsonb)"
    )
    values = [f"v{i}" for i in range(20)]
    values[7] = "poison"
    ids = await client.enqueue_many(give.call(v) for v in values)
    with anyio.fail_after(20):
        async with app.worker(concurrency=20):
            for job_id, value in zip(ids, values, strict=True):
                if value == "poison":
                    with pytest.raises(asyncjobs.JobFailed, match="could not be stored"):
                        await client.wait(job_id, timeout=10)
                else:
                    assert await client.wait(job_id, timeout=10) == value
