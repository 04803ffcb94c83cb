"""Waits and readings shared by the tests that drive real worker processes."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import anyio

import asyncjobs

ROOT = Path(__file__).resolve().parent.parent

Spawn = Callable[..., subprocess.Popen[str]]


async def until(
    client: asyncjobs.Client,
    job_id: int,
    check: Callable[[asyncjobs.Job], bool],
    timeout: float = 30,
) -> asyncjobs.Job:
    """Look at the job (the test polls; the library never does) until `check(job)` holds;
    on timeout, fail with what the job looked like last."""
    deadline = time.monotonic() + timeout
    while True:
        job = await client.get(job_id)
        if check(job):
            return job
        assert time.monotonic() < deadline, job
        await anyio.sleep(0.005)


async def workers_up(client: asyncjobs.Client, count: int, timeout: float = 30) -> None:
    """Until at least `count` workers are registered."""
    with anyio.fail_after(timeout):
        while len(await client.workers()) < count:
            await anyio.sleep(0.02)


def read_marks(path: Path) -> list[tuple[str, int, int, float]]:
    """The lines `tests.worker_app._mark` wrote: (what, attempt, pid, time)."""
    lines = path.read_text().split("\n") if path.exists() else []
    fields = (line.split() for line in lines if line)
    return [(w, int(a), int(p), float(t)) for w, a, p, t in fields]


async def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m asyncjobs ARGS...` to completion; its exit code, stdout and stderr."""
    with anyio.fail_after(60):
        done = await anyio.run_process(
            [sys.executable, "-m", "asyncjobs", *args], cwd=ROOT, env=env, check=False
        )
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
    )


class Output:
    """A worker process's output, read as it comes by a thread of its own, with the pipe's
    `read()` and `readline()`: a pipe nobody reads fills at 64 KiB, and the worker then
    blocks on its next log line and looks hung."""

    def __init__(self, pipe: IO[str]) -> None:
        self._pipe = pipe
        self._lines: list[str] = []
        self._eof = False
        self._changed = threading.Condition()
        self.closed = False
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self._pipe:
            with self._changed:
                self._lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()
        self._pipe.close()

    def readline(self) -> str:
        """The next line; "" once the process has closed its output."""
        with self._changed:
            self._changed.wait_for(lambda: self._lines or self._eof)
            return self._lines.pop(0) if self._lines else ""

    def read(self) -> str:
        """Everything not read yet, once the process has closed its output."""
        with self._changed:
            self._changed.wait_for(lambda: self._eof)
            text, self._lines = "".join(self._lines), []
            return text

    def close(self) -> None:
        self.closed = True
