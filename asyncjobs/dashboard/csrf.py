"""Cross-site request protection for the dashboard's forms: a double-submit token.

Each browser gets a random token in a SameSite=Strict cookie, and every form carries it in
a hidden field; a POST is refused unless both are there and equal, and unless its Origin
(when the browser sends one) is the dashboard's own. Another site can make a browser send
the cookie (not with SameSite=Strict, but older browsers) but cannot read it to fill the
field.
"""

from __future__ import annotations

import hmac
import secrets

from starlette.requests import Request
from starlette.responses import Response

COOKIE = "asyncjobs_csrf"
FIELD = "csrf"


def token(request: Request) -> str:
    """The request's token: its cookie's, or a new one (set by `remember`)."""
    current = request.cookies.get(COOKIE)
    if current and len(current) == 43:
        return current
    made: str = request.state.__dict__.setdefault("csrf_new", secrets.token_urlsafe(32))
    return made


def remember(request: Request, response: Response) -> None:
    """Set the cookie when this request made a new token."""
    made = request.state.__dict__.get("csrf_new")
    if made:
        path = request.scope.get("root_path", "") or "/"
        response.set_cookie(COOKIE, made, httponly=True, samesite="strict", path=path)


def check(request: Request, form_token: str | None) -> str | None:
    """Why this POST is refused, or None if it may go on."""
    cookie = request.cookies.get(COOKIE)
    if not cookie or not form_token or not hmac.compare_digest(cookie, form_token):
        return "missing or wrong CSRF token: reload the page and try again"
    origin = request.headers.get("origin")
    if origin is not None and origin != "null":
        host = request.headers.get("host", "")
        if origin.split("://", 1)[-1] != host:
            return f"cross-site request refused (origin {origin})"
    return None
