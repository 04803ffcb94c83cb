"""The systems under test, by name."""

from __future__ import annotations

from benchmarks.systems.base import System


def get(name: str) -> System:
    if name == "asyncjobs":
        from benchmarks.systems.asyncjobs_system import AsyncjobsSystem

        return AsyncjobsSystem()
    if name == "pgqueuer":
        from benchmarks.systems.pgqueuer_system import PgqueuerSystem

        return PgqueuerSystem()
    if name == "procrastinate":
        from benchmarks.systems.procrastinate_system import ProcrastinateSystem

        return ProcrastinateSystem()
    raise SystemExit(f"unknown system {name!r}: choose from {', '.join(NAMES)}")


NAMES = ("asyncjobs", "pgqueuer", "procrastinate")
