"""Every error is application/problem+json (RFC 9457) with a `detail` that says what was wrong and where."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from tracker_watch import log

_log = log.get("tracker_watch.api")
PROBLEM = "application/problem+json"
TITLES = {400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found", 405: "Method not allowed",
          406: "Not acceptable", 409: "Conflict", 413: "Request body too large", 415: "Unsupported media type",
          422: "Unprocessable content", 429: "Too many requests", 500: "Internal server error",
          503: "Service unavailable"}


class Problem(Exception):
    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra


def not_found(what: str) -> Problem:
    return Problem(404, f"{what} does not exist or is not visible to this token")


def problem_response(request: web.Request, status: int, detail: str, headers: dict[str, str] | None = None,
                     **extra: Any) -> web.Response:
    body = {"type": "about:blank", "title": TITLES.get(status, "Error"), "status": status, "detail": detail,
            "instance": request.path, **extra}
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
        return problem_response(request, 405, f"{request.method} is not allowed here; allowed: "
                                          f"{', '.join(sorted(exc.allowed_methods))}",
                                {"Allow": ", ".join(sorted(exc.allowed_methods))})
    except web.HTTPNotFound:
        return problem_response(request, 404, f"no such endpoint: {request.path}")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return problem_response(request, exc.status, exc.reason)
    except Exception:
        _log.exception("api_error", method=request.method, path=request.path)
        return problem_response(request, 500, "an internal error occurred; it has been logged")
