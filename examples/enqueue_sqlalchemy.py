"""Enqueue in your own SQLAlchemy transaction: the job exists, and workers hear of it, only
if your transaction commits.

    pip install 'asyncjobs[sqlalchemy]'
    python -m examples.enqueue_sqlalchemy        # $ASYNCJOBS_DSN, else the embedded server
    asyncjobs worker examples.tasks:app          # runs the job that was committed

`enqueue_tx` takes an AsyncSession or an AsyncConnection, on postgresql+asyncpg:// (or
postgresql+psycopg://).
"""

from __future__ import annotations

import anyio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

import asyncjobs
from examples.tasks import app, send_welcome_email


async def main() -> None:
    async with app.database() as dsn, app.client() as client:
        engine = create_async_engine(dsn.replace("postgresql://", "postgresql+asyncpg://", 1))
        try:
            async with AsyncSession(engine) as session, session.begin():
                await session.execute(text("CREATE TEMP TABLE signups (email text)"))
                await session.execute(
                    text("INSERT INTO signups (email) VALUES (:email)"),
                    {"email": "ada@example.com"},
                )
                job_id = await client.enqueue_tx(
                    session, send_welcome_email, "ada@example.com", name="Ada"
                )
            print(f"committed: job {job_id} is {(await client.get(job_id)).state.value}")

            try:
                async with engine.begin() as conn:  # an AsyncConnection works the same
                    dropped = await client.enqueue_tx(
                        conn, send_welcome_email, "bob@example.com", name="Bob"
                    )
                    raise RuntimeError("the signup failed")
            except RuntimeError:
                pass
            try:
                await client.get(dropped)
            except asyncjobs.JobNotFound:
                print(f"rolled back: job {dropped} was never stored")
        finally:
            await engine.dispose()


if __name__ == "__main__":
    anyio.run(main)
