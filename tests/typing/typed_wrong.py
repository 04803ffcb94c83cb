"""Checked by mypy in tests/test_typing.py: this file must fail, with the errors the test
names (a wrong argument, a result used as the wrong type)."""

from __future__ import annotations

import asyncjobs

app = asyncjobs.App()


@app.task
async def add(a: int, b: int) -> int:
    return a + b


async def main() -> None:
    async with app.client() as client:
        await client.enqueue(add, 1, "two")  # E1
        job_id = await client.enqueue(add, 1, 2)
        print((await client.wait(job_id)).upper())  # E2
        job = await client.get(job_id)
        print(job.result + 1)  # E3


def sync_producer() -> None:
    with app.sync_client() as jobs:
        jobs.enqueue(add, "one", 2)  # E4
        print(jobs.get(jobs.enqueue(add, 1, 2)).result + 1)  # E3
