"""Console sessions: a random id in an HttpOnly, SameSite=Strict cookie names a server-side session that holds
the API token it was opened with, a CSRF token and its deadlines.

The token is checked again on every request (tracker_watch.api.auth.authenticate), so revoking it ends its
console sessions at their next click. Sessions live in this process's memory: a restart signs everyone out,
and behind a load balancer each console user must stick to one node.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from aiohttp import web

COOKIE = "tw_console"
LOGIN_COOKIE = "tw_console_login"  # double-submit CSRF token of the sign-in form (no session exists yet)
PATH = "/console"


@dataclass
class Session:
    sid: str
    token: str
    csrf: str
    expires_at: float  # absolute: a session never outlives this
    idle_until: float  # pushed forward by each request
    flashes: list[tuple[str, str]] = field(default_factory=list)  # (kind, text) shown once on the next page


class SessionStore:
    """At most `limit` sessions; the least recently used goes first when full."""

    def __init__(self, max_s: float = 8 * 3600.0, idle_s: float = 3600.0, limit: int = 10_000) -> None:
        self.max_s = max_s
        self.idle_s = idle_s
        self.limit = limit
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def open(self, token: str) -> Session:
        now = time.monotonic()
        s = Session(secrets.token_urlsafe(32), token, secrets.token_urlsafe(32), now + self.max_s, now + self.idle_s)
        self._sessions[s.sid] = s
        while len(self._sessions) > self.limit:
            self._sessions.popitem(last=False)
        return s

    def get(self, sid: str | None) -> Session | None:
        """The live session with this id (its idle deadline renewed), or None if unknown or expired."""
        if not sid:
            return None
        s = self._sessions.get(sid)
        now = time.monotonic()
        if s is None:
            return None
        if now >= s.expires_at or now >= s.idle_until:
            del self._sessions[sid]
            return None
        s.idle_until = min(s.expires_at, now + self.idle_s)
        self._sessions.move_to_end(sid)
        return s

    def close(self, sid: str | None) -> None:
        if sid:
            self._sessions.pop(sid, None)

    def expire(self, sid: str) -> None:
        """End a session as if its time had run out (tests, and revocation)."""
        if (s := self._sessions.get(sid)) is not None:
            s.expires_at = s.idle_until = time.monotonic()


def secure(request: web.Request) -> bool:
    """Over TLS, directly or (as the README advises) through a TLS-terminating proxy."""
    return request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"


def set_cookie(request: web.Request, response: web.StreamResponse, name: str, value: str,
               max_age: int | None = None) -> None:
    response.set_cookie(name, value, path=PATH, httponly=True, samesite="Strict", secure=secure(request),
                        max_age=max_age)


def clear_cookie(response: web.StreamResponse, name: str) -> None:
    response.del_cookie(name, path=PATH)


def same_token(a: object, b: str) -> bool:
    return isinstance(a, str) and bool(a) and secrets.compare_digest(a.encode(), b.encode())
