"""The embedded PostgreSQL as the processes of a machine share it: up while any of them uses
it, stopped after the last one leaves, and one database on it per project.

Two lock files beside the data directory carry the protocol (flock, so a process that dies
in any way lets go of its locks at once):

- ``<data dir>.users``: every process that uses the server holds a shared lock on it.
- ``<data dir>.keeper``: the keeper (``python -m asyncjobs.db.keeper``), a small process of
  its own session, holds it exclusively for as long as it lives. The keeper starts the
  server (which dies with it, by the parent-death signal), then waits for an exclusive lock
  on the users file: it gets it once no process uses the server, and stops the server.

A process that needs the server takes its shared lock first (waiting while a keeper is
stopping the server), then uses the running server, or starts a keeper when there is none.
So the server never stops under a user, and no process is tied to the one that started it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import select
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import asyncpg

from .embedded import EmbeddedPostgresError, EmbeddedServer

_WAIT = 60.0  # for a keeper to start the server (initdb the first time) or to stop it
_POLL = 0.01
_MAX_DATABASE_NAME = 63  # PostgreSQL's NAMEDATALEN - 1, in bytes


def users_path(data_dir: Path) -> Path:
    """The lock file every process using the server holds shared."""
    return data_dir.with_name(data_dir.name + ".users")


def keeper_path(data_dir: Path) -> Path:
    """The lock file the keeper holds for as long as it lives."""
    return data_dir.with_name(data_dir.name + ".keeper")


def open_lock(path: Path) -> int:
    """A descriptor of the lock file at `path` (created if needed), not inherited by children."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)


def _try_lock(fd: int, operation: int) -> bool:
    try:
        fcntl.flock(fd, operation | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def keeper_alive(data_dir: Path) -> bool:
    """Whether a keeper holds the server of `data_dir`."""
    fd = open_lock(keeper_path(data_dir))
    try:
        return not _try_lock(fd, fcntl.LOCK_SH)
    finally:
        os.close(fd)


class SharedServer:
    """This process's use of the embedded server of `data_dir` (default: the user's).

    `acquire()` makes sure the server runs and keeps it up until `release()` (or until this
    process ends, however it ends)."""

    def __init__(self, data_dir: str | os.PathLike[str] | None = None) -> None:
        self.server = EmbeddedServer(data_dir)
        self._fd: int | None = None

    @property
    def data_dir(self) -> Path:
        """The server's data directory."""
        return self.server.data_dir

    @property
    def dsn(self) -> str:
        """The DSN of the server's `postgres` database."""
        return self.server.dsn

    def acquire(self) -> str:
        """Use the server, starting it if it is not running; return its DSN. Blocks ~0.05 s
        when it runs, about a second when a keeper must start it (longer the first time)."""
        if self._fd is not None:
            return self.dsn
        fd = open_lock(users_path(self.data_dir))
        try:
            deadline = time.monotonic() + _WAIT
            # A keeper stopping the server holds the users file exclusively until it is done.
            while not _try_lock(fd, fcntl.LOCK_SH):
                if time.monotonic() > deadline:
                    raise EmbeddedPostgresError(
                        f"the embedded PostgreSQL on {self.data_dir} has been stopping for "
                        f"{_WAIT:.0f} s; see its log {self.server.log_path}"
                    )
                time.sleep(_POLL)
            self._ensure_running(deadline)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self.dsn

    def release(self) -> None:
        """Stop using the server: once no process uses it, its keeper stops it."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def _ensure_running(self, deadline: float) -> None:
        while True:
            if keeper_alive(self.data_dir):
                if self.server.running():
                    return
            else:
                problem = self._start_keeper()
                if problem is not None:
                    raise EmbeddedPostgresError(problem)
                continue
            if time.monotonic() > deadline:
                raise EmbeddedPostgresError(
                    f"the embedded PostgreSQL on {self.data_dir} did not start within "
                    f"{_WAIT:.0f} s; see its log {self.server.log_path}"
                )
            time.sleep(_POLL)

    def _start_keeper(self) -> str | None:
        """Start a keeper and wait for its answer; None when it (or a keeper that won the
        race to start) runs the server, else what went wrong."""
        # asyncjobs importable by the keeper wherever this process found it (a source tree
        # on sys.path only through the current directory, say): it runs from "/".
        package_parent = str(Path(__file__).resolve().parents[2])
        path = os.pathsep.join(p for p in (package_parent, os.environ.get("PYTHONPATH")) if p)
        proc = subprocess.Popen(
            [sys.executable, "-m", "asyncjobs.db.keeper", str(self.data_dir)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": path},
            # Its own session: a Ctrl-C in this terminal must not stop the server under the
            # other processes that use it.
            start_new_session=True,
            cwd="/",
        )
        assert proc.stdout is not None
        said: list[str] = []  # what it printed before its answer (a warning, a traceback)
        deadline = time.monotonic() + _WAIT
        try:
            while True:
                ready, _, _ = select.select([proc.stdout], [], [], deadline - time.monotonic())
                if not ready:
                    return f"the embedded PostgreSQL keeper did not answer within {_WAIT:.0f} s"
                line = proc.stdout.readline().decode(errors="replace").strip()
                if line in ("ready", "busy"):
                    return None
                if line.startswith("error "):
                    # Gone before we say so: a retry must not wait for a dying keeper.
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(5)
                    return line.removeprefix("error ")
                if not line:  # its output ended without an answer: it exited
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(5)
                    last = said[-1] if said else "no output"
                    return f"the embedded PostgreSQL keeper exited with {proc.returncode}: {last}"
                said.append(line)
        finally:
            proc.stdout.close()

    def __repr__(self) -> str:
        return f"<SharedServer {str(self.data_dir)!r} {'in use' if self._fd else 'unused'}>"


def database_name(project: str) -> str:
    """The database of a project on the embedded server: the project's name, shortened with
    a digest of the whole when it is too long for PostgreSQL."""
    if len(project.encode()) <= _MAX_DATABASE_NAME:
        return project
    digest = hashlib.sha256(project.encode()).hexdigest()[:12]
    head = project.encode()[: _MAX_DATABASE_NAME - 13].decode(errors="ignore")
    return f"{head}_{digest}"


def database_dsn(server_dsn: str, database: str) -> str:
    """`server_dsn` (of database postgres) naming `database` instead."""
    return server_dsn.replace("@/postgres?", f"@/{urllib.parse.quote(database, safe='')}?", 1)


async def project_database(server_dsn: str, project: str) -> str:
    """Create the project's database on the embedded server if it has none; its DSN."""
    name = database_name(project)
    conn = await asyncpg.connect(server_dsn)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            quoted = '"' + name.replace('"', '""') + '"'
            # Two processes of one project may start at once: one of them creates it.
            with contextlib.suppress(asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
                await conn.execute(f"CREATE DATABASE {quoted}")
    finally:
        await conn.close()
    return database_dsn(server_dsn, name)


def embedded_data_dir(dsn: str) -> Path | None:
    """The data directory of the embedded server `dsn` points at by its Unix socket (a DSN
    that a process using the embedded server passed on), else None."""
    if "host=" not in dsn or not dsn.startswith(("postgresql://", "postgres://")):
        return None
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(dsn).query)
    hosts = query.get("host") or []
    if len(hosts) != 1 or not hosts[0].startswith("/"):
        return None
    host = Path(hosts[0])
    if (host / "PG_VERSION").is_file() and keeper_path(host).exists():
        return host
    return None
