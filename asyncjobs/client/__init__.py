"""The client: enqueue jobs, look at them and steer them."""

from .client import Client

__all__ = ["Client"]
