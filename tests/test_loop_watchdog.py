"""The worker's loop watchdog, on its own: a block outside any job, and one that lasts."""

from __future__ import annotations

import time

import anyio
import anyio.lowlevel
import pytest

from asyncjobs.worker.loop_watchdog import LoopWatchdog


async def test_a_long_block_is_reported_while_it_lasts_and_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("WARNING", logger="asyncjobs.watchdog")
    watchdog = LoopWatchdog(threshold=0.2, interval=0.05, still_blocked=0.6)
    async with anyio.create_task_group() as tg:
        tg.start_soon(watchdog.run)
        await anyio.sleep(0.2)
        time.sleep(1.0)  # the loop is held: no beat, no other task runs
        await anyio.sleep(0.3)  # the watcher sees the beat again
        tg.cancel_scope.cancel()
    still, ended = [r.getMessage() for r in caplog.records]
    assert still.startswith("code outside any job has blocked the event loop for "), still
    assert "test_loop_watchdog.py:" in still and "so far" in still
    assert ended.startswith("code outside any job blocked the event loop for "), ended
    seconds = float(ended.split(" for ", 1)[1].split("s ", 1)[0])
    assert 0.9 <= seconds < 2.0, ended


async def test_a_busy_but_responsive_loop_is_not_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("WARNING", logger="asyncjobs.watchdog")
    async with anyio.create_task_group() as tg:
        tg.start_soon(LoopWatchdog(threshold=0.3, interval=0.05).run)
        for _ in range(20):
            time.sleep(0.02)  # short holds, as ordinary work makes
            await anyio.lowlevel.checkpoint()
        tg.cancel_scope.cancel()
    assert caplog.records == []
