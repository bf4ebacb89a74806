"""Every error is application/problem+json (RFC 9457) with a `detail` that says what was wrong and where."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from tracker_watch import log
from tracker_watch.ledger.db import is_outage

_log = log.get("tracker_watch.api")
PROBLEM = "application/problem+json"
TITLES = {400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found", 405: "Method not allowed",
          406: "Not acceptable", 409: "Conflict", 413: "Request body too large", 414: "URI too long",
          415: "Unsupported media type", 417: "Expectation failed", 422: "Unprocessable content",
          429: "Too many requests", 431: "Request header fields too large", 500: "Internal server error",
          501: "Not implemented", 503: "Service unavailable", 504: "Gateway timeout",
          505: "HTTP version not supported"}
MAX_INSTANCE = 256  # a longer path is not repeated back


class Problem(Exception):
    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra


def not_found(what: str) -> Problem:
    return Problem(404, f"{what} does not exist or is not visible to this token")


def problem_response(request: web.Request | None, status: int, detail: str, headers: dict[str, str] | None = None,
                     **extra: Any) -> web.Response:
    body: dict[str, Any] = {"type": "about:blank", "title": TITLES.get(status, "Error"), "status": status,
                            "detail": detail}
    if request is not None and len(request.path) <= MAX_INSTANCE:
        body["instance"] = request.path
    body.update(extra)
    return web.Response(status=status, body=json.dumps(body).encode(), content_type=PROBLEM, headers=headers)


@web.middleware
async def problems(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except Problem as p:
        return problem_response(request, p.status, p.detail, p.headers, **p.extra)
    except web.HTTPRequestEntityTooLarge:
        from tracker_watch.api.keys import MAX_BODY  # here: keys imports auth, which imports this module

        return problem_response(request, 413, f"the request body exceeds the limit of {request.app[MAX_BODY]} "
                                          "bytes (api.max_body_bytes)")
    except web.HTTPMethodNotAllowed as exc:
        return problem_response(request, 405, "this method is not allowed here; allowed: "
                                          f"{', '.join(sorted(exc.allowed_methods))}",
                                {"Allow": ", ".join(sorted(exc.allowed_methods))})
    except web.HTTPNotFound:
        return problem_response(request, 404, "no such endpoint")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return problem_response(request, exc.status, TITLES.get(exc.status, "Error"))
    except (HttpProcessingError, RequestPayloadError):  # the body broke as it was read: chunking, gzip
        return problem_response(request, 400, "malformed HTTP request body")
    except Exception as exc:
        if is_outage(exc):  # the primary (or the replica) is away: a retry later may succeed, unlike a 500
            _log.warning("api_database_unavailable", method=request.method, path=request.path,
                         error=(str(exc) or type(exc).__name__)[:300])
            return problem_response(request, 503, "the database is unavailable; retry later", {"Retry-After": "5"})
        _log.exception("api_error", method=request.method, path=request.path)
        return problem_response(request, 500, "an internal error occurred; it has been logged")
