"""The keeper of the shared embedded PostgreSQL: ``python -m asyncjobs.db.keeper DATA_DIR``.

Started by the first process that needs the server (see `shared_server`), in a session of
its own. It holds the keeper lock, starts the server (which dies with it), says ``ready``
(or ``error <what>``, or ``busy`` when another keeper holds the lock) on its stdout, then
waits until no process holds the users file and stops the server, noting why in its log.
"""

from __future__ import annotations

import fcntl
import os
import sys
import time
from pathlib import Path

from .embedded import EmbeddedServer
from .shared_server import keeper_path, open_lock, users_path

# After the last user leaves, the server waits this long for the next one: commands run one
# after the other (enqueue, then a worker) would otherwise each start it again.
LINGER = 1.0


def _say(line: str) -> None:
    os.write(1, (line + "\n").encode())


def _note(server: EmbeddedServer, text: str) -> None:
    try:
        with open(server.log_path, "a") as log:
            log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} asyncjobs keeper: {text}\n")
    except OSError:
        pass


def _wait_for_no_users(users: int) -> None:
    """Return holding the users file exclusively, once nobody used it for LINGER seconds."""
    while True:
        fcntl.flock(users, fcntl.LOCK_EX)
        fcntl.flock(users, fcntl.LOCK_UN)
        time.sleep(LINGER)
        try:
            fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # someone came back
        return


def main(data_dir: str) -> int:
    """Run the keeper of the server of `data_dir`; its exit code."""
    directory = Path(data_dir)
    keeper = open_lock(keeper_path(directory))
    try:
        fcntl.flock(keeper, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        _say("busy")
        return 0
    server = EmbeddedServer(directory)
    try:
        server.start()
    except Exception as exc:
        _say("error " + " ".join(str(exc).split()))
        return 1
    _say("ready")
    # Nobody reads further: stdout and stderr go nowhere from now on.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    users = open_lock(users_path(directory))
    _wait_for_no_users(users)
    _note(server, "no process uses the server any more; stopping it")
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
