"""What every console page shares: the signed-in principal, CSRF checks, role guards, HTML error pages,
security headers and rendering."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp_jinja2
from aiohttp import web

from tracker_watch import log
from tracker_watch.api.auth import Principal
from tracker_watch.api.errors import Problem
from tracker_watch.api.keys import LIMITER, PRINCIPAL, authenticate_request
from tracker_watch.console import session as sess

_log = log.get("tracker_watch.console")
SESSIONS = web.AppKey("console_sessions", sess.SessionStore)
WHO = web.RequestKey("console_principal", Principal)
SESSION = web.RequestKey("console_session", sess.Session)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ROLE_NAMES = {"rightsholder": "rights holder", "isp": "ISP", "operator": "operator"}
PUBLIC = ("/console/login", "/console/static/")
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'",
    "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin",
}


class ConsoleError(Exception):
    """Shown to the user as a page with this status and message (never a stack trace)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def not_visible(what: str) -> ConsoleError:
    return ConsoleError(404, f"{what} does not exist or is not visible to you")


def who(request: web.Request) -> Principal:
    return request[WHO]


def session(request: web.Request) -> sess.Session:
    return request[SESSION]


def flash(request: web.Request, text: str, kind: str = "ok") -> None:
    session(request).flashes.append((kind, text))


def require(request: web.Request, *roles: str) -> Principal:
    p = who(request)
    if p.role not in roles:
        names = " and ".join(ROLE_NAMES[r] for r in roles)
        raise ConsoleError(403, f"this page is for {names} accounts; you are signed in as {ROLE_NAMES[p.role]}")
    return p


def redirect(location: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(location)


def render(request: web.Request, template: str, context: dict[str, Any], status: int = 200) -> web.Response:
    base: dict[str, Any] = {"me": request.get(WHO), "csrf": request[SESSION].csrf if SESSION in request else None,
                            "flashes": [], "path": request.path}
    if SESSION in request:
        base["flashes"], request[SESSION].flashes = request[SESSION].flashes, []
    return aiohttp_jinja2.render_template(template, request, {**base, **context}, status=status)


def safe_next(value: object) -> str | None:
    """A page of this console to return to after signing in; nothing that could lead elsewhere."""
    if not isinstance(value, str) or not value.startswith("/console/") or "//" in value or "\\" in value:
        return None
    if any(ord(c) < 0x21 for c in value) or value.startswith(("/console/login", "/console/logout")):
        return None
    return value


def _same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    if origin is None:  # older browsers omit it on same-origin POSTs; SameSite=Strict and the token still apply
        return True
    return urlsplit(origin).netloc == request.host


async def check_csrf(request: web.Request, expected: str) -> None:
    form = await request.post()
    if not _same_origin(request) or not sess.same_token(form.get("csrf"), expected):
        raise ConsoleError(403, "the form could not be verified (CSRF check failed); reload the page and try again")


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Signed in (else to the sign-in page), the token still valid, and every POST carrying the CSRF token."""
    try:
        response = await _guarded(request, handler)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = _error_page(request, exc.status, exc.reason)
    except ConsoleError as exc:
        response = _error_page(request, exc.status, exc.message)
    except Problem as p:
        response = _error_page(request, p.status, p.detail)
        response.headers.update({k: v for k, v in p.headers.items() if k == "Retry-After"})
    except Exception:
        _log.exception("console_error", method=request.method, path=request.path)
        response = _error_page(request, 500, "an internal error occurred; it has been logged")
    for key, value in HEADERS.items():
        response.headers.setdefault(key, value)
    if not request.path.startswith("/console/static/"):
        response.headers.setdefault("Cache-Control", "no-store")
    return response


async def _guarded(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith(PUBLIC):
        return await handler(request)
    store = request.app[SESSIONS]
    s = store.get(request.cookies.get(sess.COOKIE))
    if s is None:
        if request.method == "POST":
            raise ConsoleError(403, "your session has expired or you are signed out; sign in and try again")
        query = {"next": request.path_qs} if request.path not in ("/console", "/console/") else {}
        if sess.COOKIE in request.cookies:
            query["expired"] = "1"
        raise redirect(f"/console/login?{urlencode(query)}" if query else "/console/login")
    try:
        principal = await authenticate_request(request, f"Bearer {s.token}")
    except Problem as p:
        if p.status != 401:  # not about the token (e.g. the database): no reason to end the session
            raise
        store.close(s.sid)
        raise redirect("/console/login?revoked=1") from None
    request.config_dict[LIMITER].take(principal.token_id)
    # PRINCIPAL too: the API's own tenant checks (api.targets.visible_target, live_status) then apply as they are
    request[WHO], request[SESSION], request[PRINCIPAL] = principal, s, principal
    if request.method == "POST":
        await check_csrf(request, s.csrf)
    return await handler(request)


def _error_page(request: web.Request, status: int, message: str) -> web.Response:
    titles = {400: "That did not work", 403: "Not allowed", 404: "Not found", 405: "Not allowed",
              413: "Too large", 429: "Too many requests", 500: "Something went wrong"}
    return render(request, "error.html", {"status": status, "title": titles.get(status, "Error"),
                                          "message": message}, status=status)


def when(value: datetime | None) -> str:
    """Times are shown in UTC, to the second, the same everywhere (evidence is compared across time zones)."""
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def size(value: int | None) -> str:
    if value is None:
        return "—"
    amount = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if amount < 1024 or unit == "TiB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{value} B"
