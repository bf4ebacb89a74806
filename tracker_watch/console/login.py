"""Sign in with an API token, sign out."""

from __future__ import annotations

import secrets

from aiohttp import web

from tracker_watch.api.errors import Problem
from tracker_watch.api.keys import authenticate_request
from tracker_watch.console import session as sess
from tracker_watch.console.core import SESSIONS, ConsoleError, check_csrf, redirect, render, safe_next, who

HOME = {"rightsholder": "/console/targets", "isp": "/console/notices", "operator": "/console/ops"}


async def login_form(request: web.Request, error: str | None = None, status: int = 200) -> web.Response:
    current = request.app[SESSIONS].get(request.cookies.get(sess.COOKIE))
    if current is not None and error is None and request.method == "GET":
        raise redirect("/console/")
    nonce = secrets.token_urlsafe(32)
    notes = {"expired": "Your session has expired; please sign in again.",
             "revoked": "Your token has been revoked or is no longer valid; please sign in with a current one.",
             "out": "You have signed out."}
    note = next((text for key, text in notes.items() if key in request.query), None)
    after = safe_next(request.query.get("next")) or safe_next((await request.post()).get("next")
                                                              if request.method == "POST" else None)
    response = render(request, "login.html", {"login_csrf": nonce, "error": error, "note": note, "next": after},
                      status=status)
    sess.set_cookie(request, response, sess.LOGIN_COOKIE, nonce)
    return response


async def login(request: web.Request) -> web.StreamResponse:
    expected = request.cookies.get(sess.LOGIN_COOKIE, "")
    try:
        await check_csrf(request, expected)
    except ConsoleError:
        return await login_form(request, "The sign-in form could not be verified (CSRF check failed). "
                                         "Please try again.", 403)
    form = await request.post()
    token = form.get("token")
    if not isinstance(token, str) or not token.strip():
        return await login_form(request, "Enter your API token.", 400)
    try:
        principal = await authenticate_request(request, f"Bearer {token.strip()}")
    except Problem:
        return await login_form(request, "That token is unknown or has been revoked.", 401)
    store = request.app[SESSIONS]
    store.close(request.cookies.get(sess.COOKIE))  # a new session id at every sign-in (no fixation)
    s = store.open(token.strip())
    response = redirect(safe_next(form.get("next")) or HOME[principal.role])
    sess.set_cookie(request, response, sess.COOKIE, s.sid)
    sess.clear_cookie(response, sess.LOGIN_COOKIE)
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    request.app[SESSIONS].close(request.cookies.get(sess.COOKIE))
    response = redirect("/console/login?out=1")
    sess.clear_cookie(response, sess.COOKIE)
    raise response


async def home(request: web.Request) -> web.StreamResponse:
    raise redirect(HOME[who(request).role])


def add_routes(app: web.Application) -> None:
    app.router.add_get("/login", login_form)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_get("/", home)
