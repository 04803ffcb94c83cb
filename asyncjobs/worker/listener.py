"""A LISTEN connection that reconnects, and says so, because NOTIFY is not stored.

A message sent while no listener is connected is lost, so after every (re)connect the
`on_connect` hook re-reads whatever the messages would have said.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

import anyio
from anyio.abc import TaskStatus

from ..db.connections import DATABASE_ERRORS, connect
from ..retry import RetryDelay

logger = logging.getLogger("asyncjobs.listener")

Handler = Callable[[str], None]


class Listener:
    """Listens on some channels and calls a handler per message, until cancelled."""

    def __init__(
        self,
        dsn: str,
        handlers: Mapping[str, Handler],
        *,
        on_connect: Callable[[], Awaitable[None]] | None = None,
        max_backoff: float = 2.0,
    ) -> None:
        self._dsn = dsn
        self._handlers = dict(handlers)
        self._on_connect = on_connect
        self._max_backoff = max_backoff

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Listen until cancelled; `task_status.started()` once the first LISTEN is in place
        (or the first attempt failed, so that a caller is never stuck on a dead server)."""
        retry = RetryDelay(most=self._max_backoff)
        started = False
        while True:
            lost = anyio.Event()
            try:
                conn = await connect(self._dsn)
            except DATABASE_ERRORS as exc:
                logger.warning(
                    "listener cannot connect (retrying in %.1fs): %s", retry.upcoming, exc
                )
            else:
                try:
                    conn.add_termination_listener(lambda _conn, lost=lost: lost.set())
                    for channel in self._handlers:
                        await conn.add_listener(channel, self._dispatch)
                    if self._on_connect is not None:
                        await self._on_connect()
                    if not started:
                        started = True
                        task_status.started()
                    retry.reset()
                    await lost.wait()
                    logger.warning("listener connection lost; reconnecting")
                except DATABASE_ERRORS as exc:
                    logger.warning("listener failed (retrying in %.1fs): %s", retry.upcoming, exc)
                finally:
                    conn.terminate()
            if not started:
                started = True
                task_status.started()
            await anyio.sleep(retry.next())

    def _dispatch(self, _conn: object, _pid: int, channel: str, payload: object) -> None:
        try:
            self._handlers[channel](str(payload))
        except Exception:
            # A malformed message must not take the listener (and with it every
            # pushed cancellation) down.
            logger.exception("cannot handle %r on channel %s", payload, channel)
