"""What every response carries, and problem+json for the errors aiohttp answers before the application runs.

A request aiohttp cannot parse (a 20 KB URL, a header too long, a broken request line, a bad chunk) never
reaches the routes or their middlewares: aiohttp's connection handler answers it itself, in text/plain that
repeats part of the input. Our handler answers those in problem+json too, repeating nothing, with the same
headers as every other response.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from aiohttp.web_protocol import RequestHandler

from tracker_watch import log
from tracker_watch.api.errors import TITLES, problem_response

_log = log.get("tracker_watch.api")
SERVER = "tracker-watch"  # never the versions of Python and aiohttp
HEADERS = {
    "Server": SERVER,
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
}
PUBLIC = frozenset({"/api/v1/openapi.json"})  # the only response a cache may keep: no token, nobody's data


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: runs for every response the application sends, errors included."""
    for name, value in HEADERS.items():
        if name in ("Content-Security-Policy", "Referrer-Policy") and name in response.headers:
            continue  # the console's pages set their own (its CSS and script; same-origin Origin for CSRF checks)
        response.headers[name] = value
    if request.path not in PUBLIC:
        response.headers["Cache-Control"] = "no-store"


class _ProblemHandler(RequestHandler):
    def handle_error(self, request: Any, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if request.writer.output_size > 0:  # part of a response went out: only closing is left (as aiohttp)
            raise ConnectionError("response already started")
        status, detail = _classify(status, exc)
        if status >= 500:  # our fault, not the request's: aiohttp would have logged it with its traceback
            _log.error("api_error", status=status, error=repr(exc)[:300] if exc else None)
        else:
            _log.info("api_unparsable_request", status=status, error=type(exc).__name__ if exc else None,
                      remote=request.remote)
        response = problem_response(None, status, detail, {**HEADERS, "Cache-Control": "no-store"})
        response.force_close()
        return response


def _classify(status: int, exc: BaseException | None) -> tuple[int, str]:
    if isinstance(exc, LineTooLong):
        # aiohttp's C parser quotes the URL it was reading as a bytearray, a header line as bytes
        if "bytearray(" in str(exc):
            return 414, "the URL is too long"
        return 431, "the request line or a header is too long"
    if isinstance(exc, BadHttpMessage) or 400 <= status < 500:
        return (status if 400 <= status < 500 else 400), "malformed HTTP request"
    if status == 500:
        return 500, "an internal error occurred; it has been logged"
    return status, TITLES.get(status, "Error")  # 504: a handler that took too long


class _ProblemServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _ProblemHandler(self, loop=self._loop, **self._kwargs)


def _outside_the_middlewares(handle: Callable[[Any], Awaitable[Any]]) -> Callable[[Any], Awaitable[Any]]:
    """What the application raises before its middlewares run (an Expect header other than 100-continue:
    aiohttp's 417 repeats it in text/plain) is answered in problem+json too."""
    async def handler(request: Any) -> Any:
        try:
            return await handle(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return problem_response(request, exc.status, TITLES.get(exc.status, "Error"))
    return handler


class ProblemRunner(web.AppRunner):
    """An AppRunner whose connections answer unparsable requests in problem+json."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _ProblemServer  # the same server, only the connection handler it makes differs
        server.request_handler = _outside_the_middlewares(server.request_handler)
        return server
