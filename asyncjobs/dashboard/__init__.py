"""The web dashboard (`pip install asyncjobs[dashboard]`): `app.dashboard(...)` is an ASGI
app to mount, `asyncjobs dashboard` serves one."""

from .access import ACTIONS, Access
from .app import Dashboard

__all__ = ["ACTIONS", "Access", "Dashboard"]
