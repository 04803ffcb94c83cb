"""Checked by mypy in tests/test_typing.py: every call here type-checks, and each
reveal_type is compared with what the test expects."""

from __future__ import annotations

from typing import reveal_type

import asyncjobs

app = asyncjobs.App()


@app.task
async def add(a: int, b: int) -> int:
    return a + b


@app.task
def crunch(token: asyncjobs.CancelToken, n: int) -> list[str]:
    return [str(n)]


async def main() -> None:
    async with app.client() as client:
        job_id = await client.enqueue(add, 1, 2)
        reveal_type(job_id)  # R1
        reveal_type(await client.wait(job_id))  # R2
        crunched = await client.enqueue(crunch.options(queue="bulk"), 3)
        reveal_type(await client.wait(crunched, timeout=5))  # R3
        job = await client.get(job_id)
        reveal_type(job.result)  # R4
        by_name = await client.enqueue("app.add", 1, 2)
        reveal_type(await client.wait(by_name))  # R5
        stored: int = job_id  # a job id is an int
        reveal_type(await client.wait(stored))  # R6
        reveal_type(await client.wait(asyncjobs.JobId[int](stored)))  # R7
        many = await client.enqueue_many(add.call(i, i) for i in range(3))
        reveal_type(many)  # R11
        reveal_type(await client.wait(many[0]))  # R2
        mixed = await client.enqueue_many([add.call(1, 2), crunch.call(3)])
        reveal_type(await client.wait(mixed[1]))  # R12
        named = await client.enqueue_many([await client.call_of("app.add", 1, 2)])
        reveal_type(await client.wait(named[0]))  # R5


def sync_producer() -> None:
    with app.sync_client() as jobs:
        job_id = jobs.enqueue(add, 1, 2)
        reveal_type(job_id)  # R8
        reveal_type(jobs.get(job_id).result)  # R4
        crunched = jobs.enqueue(crunch, 3)
        reveal_type(jobs.get(crunched).result)  # R9
        reveal_type(jobs.get(jobs.enqueue("app.add", 1, 2)).result)  # R10
