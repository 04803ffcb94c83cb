"""The worker and its parts: fetcher, claims, runner, recorder, listener, heartbeat, ..."""

from .worker import Worker

__all__ = ["Worker"]
