"""How benchmark jobs tell the benchmark process what they did and when.

A job writes one line to its worker's stdout, `M <kind> <key> <epoch seconds> <pid>`, read by
`benchmarks.common.WorkerProcess`. Both processes run on the same machine, so their
`time.time()` clocks agree. Lines go out with one os.write each (atomic on a pipe), so the
tick counter's thread never interleaves with them. Kept tiny: every worker imports it.
"""

from __future__ import annotations

import os
import threading
import time

_ticks = 0
_ticker: threading.Thread | None = None


def _write(line: str) -> None:
    os.write(1, line.encode())


def emit(kind: str, key: str) -> None:
    """Record that `kind` ("start", "cancelled") happened to job `key`, now."""
    _write(f"M {kind} {key} {time.time():.6f} {os.getpid()}\n")


def ready() -> None:
    """Say that this worker process is ready to take jobs (harness-run workers only)."""
    _write(f"READY {os.getpid()} {time.time():.6f}\n")


def tick() -> None:
    """Count one executed job; a thread reports the count every 50 ms (`C <count> <time>`),
    so the benchmark can keep a steady backlog without querying the database."""
    global _ticks, _ticker
    _ticks += 1
    if _ticker is None:
        _ticker = threading.Thread(target=_report_ticks, name="bench-ticks", daemon=True)
        _ticker.start()


def _report_ticks() -> None:
    last = -1
    while True:
        count = _ticks
        if count != last:
            _write(f"C {count} {time.time():.6f}\n")
            last = count
        time.sleep(0.05)
