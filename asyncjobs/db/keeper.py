"""The keeper of the shared embedded PostgreSQL: ``python -m asyncjobs.db.keeper DATA_DIR``.

Started by the first process that needs the server (see `shared_server`), in a session of
its own. It holds the keeper lock (and writes its pid there), starts the server (which dies
with it), says ``ready`` (or ``error <what>``, or ``busy`` when another keeper holds the
lock) on its stdout, then keeps the server up until no process holds the users file, and
stops it. A server that exits while processes use it (killed, crashed) is started again;
whatever ends the server, the keeper writes why in one line of the server's log.
"""

from __future__ import annotations

import fcntl
import functools
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from .embedded import EmbeddedPostgresError, EmbeddedServer
from .shared_server import keeper_path, open_lock, users_path

# After the last user leaves, the server waits this long for the next one: commands run one
# after the other (enqueue, then a worker) would otherwise each start it again.
LINGER = 1.0
# How long to keep trying to start again a server that exited under its users: a killed
# postmaster's backends must be gone before a new one may use the data directory.
RESTART_WITHIN = 30.0
_RESTART_PAUSE = 0.2

_NO_USERS = "no users"


class _Signalled(Exception):
    """The keeper was asked to stop (SIGTERM, SIGINT)."""


def _say(line: str) -> None:
    os.write(1, (line + "\n").encode())


def _note(server: EmbeddedServer, text: str) -> None:
    try:
        with open(server.log_path, "a") as log:
            log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} asyncjobs keeper: {text}\n")
    except OSError:
        pass


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _wait_for_no_users(users: int) -> str:
    """Return holding the users file exclusively, once nobody used it for LINGER seconds."""
    while True:
        fcntl.flock(users, fcntl.LOCK_EX)
        fcntl.flock(users, fcntl.LOCK_UN)
        time.sleep(LINGER)
        try:
            fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # someone came back
        return _NO_USERS


def _in_thread(target: Callable[[], object], events: queue.SimpleQueue[object]) -> None:
    """Run `target()` in a daemon thread and put what it returns on `events`."""

    def run() -> None:
        events.put(target())

    threading.Thread(target=run, daemon=True).start()


def _start_again(server: EmbeddedServer) -> str | None:
    """Start the server again after it exited; None once it runs, else why it can't."""
    server.stop()  # forget the process that exited
    deadline = time.monotonic() + RESTART_WITHIN
    while True:
        try:
            server.start()
        except EmbeddedPostgresError as exc:
            if time.monotonic() > deadline:
                return _one_line(exc)
            time.sleep(_RESTART_PAUSE)
        else:
            return None


def _keep(server: EmbeddedServer, users: int) -> str:
    """Keep the server up while any process uses it; return why it stops now."""
    events: queue.SimpleQueue[object] = queue.SimpleQueue()
    _in_thread(functools.partial(_wait_for_no_users, users), events)
    while True:
        if server.owned:  # (a server started by another process is not ours to restart)
            _in_thread(server.wait, events)
        event = events.get()
        if event == _NO_USERS:
            return "no process uses the server any more; stopping it"
        # The server exited under its users (killed, crashed, out of memory, stopped by
        # hand): they would wait for it forever, and no newcomer would start it (this
        # keeper still holds the lock), so start it again.
        _note(server, f"the server exited (code {event}) while processes used it; starting it")
        problem = _start_again(server)
        if problem is not None:
            return (
                f"the server exited (code {event}) while processes used it and could not "
                f"start again within {RESTART_WITHIN:.0f} s: {problem}; the next asyncjobs "
                "process to start tries again"
            )
        _note(server, "the server runs again")


def _signalled(signum: int, _frame: FrameType | None) -> None:
    raise _Signalled(signal.Signals(signum).name)


def main(data_dir: str) -> int:
    """Run the keeper of the server of `data_dir`; its exit code."""
    directory = Path(data_dir)
    keeper = open_lock(keeper_path(directory))
    try:
        fcntl.flock(keeper, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        _say("busy")
        return 0
    # Who keeps the server, for an operator (and the tests): the holder of the lock.
    os.ftruncate(keeper, 0)
    os.pwrite(keeper, f"{os.getpid()}\n".encode(), 0)
    server = EmbeddedServer(directory)
    try:
        server.start()
    except Exception as exc:
        _say("error " + _one_line(exc))
        return 1
    _say("ready")
    # Nobody reads further: stdout and stderr go nowhere from now on.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    users = open_lock(users_path(directory))
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _signalled)
    try:
        why = _keep(server, users)
    except _Signalled as exc:
        why = f"asked to stop ({exc}); stopping the server, under any process still using it"
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.SIG_IGN)  # the server stops in any case
    _note(server, why)
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
