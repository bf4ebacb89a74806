"""The aiohttp application: routes from the declarations, problem+json errors, bearer auth, rate limits."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from tracker_watch import console, log, metrics
from tracker_watch.api import evidence, ledger, targets  # noqa: F401 - importing registers their routes
from tracker_watch.api.auth import FailureLimiter, RateLimiter, TokenCheck, client_key
from tracker_watch.api.common import reply
from tracker_watch.api.errors import Problem, problems
from tracker_watch.api.hardening import ProblemRunner, security_headers
from tracker_watch.api.keys import (
    AUTH_FAILURES,
    ENGINE,
    LIMITER,
    MAX_BODY,
    OPENAPI,
    POOL,
    PRINCIPAL,
    READ_POOL,
    ROUTE_TABLE,
    SETTINGS,
    TOKENS,
    WATCHLIST,
    authenticate_request,
)
from tracker_watch.api.openapi import document
from tracker_watch.api.registry import ROUTES, Route, route, router_path
from tracker_watch.config import Settings, parse_endpoint

_log = log.get("tracker_watch.api")


@route("GET", "/api/v1/openapi.json", "This API's OpenAPI 3.1 document", roles=None, tag="health",
       responses={200: ("application/json", {"type": "object"}, "the document")})
async def openapi_json(request: web.Request) -> web.Response:
    return reply(request.app[OPENAPI])


@web.middleware
async def measure(request: web.Request, handler: Any) -> web.StreamResponse:
    """Requests by route template (never the concrete path: ids would explode the label set)."""
    started = time.perf_counter()
    response: web.StreamResponse = await handler(request)
    resource = getattr(request.match_info.route, "resource", None)
    template = resource.canonical if resource is not None else "unmatched"
    metrics.API_REQUESTS.labels(route=template, method=request.method, status=str(response.status)).inc()
    metrics.API_SECONDS.labels(route=template).observe(time.perf_counter() - started)
    return response


@web.middleware
async def authorize(request: web.Request, handler: Any) -> web.StreamResponse:
    declared: Route | None = request.app[ROUTE_TABLE].get(getattr(request.match_info.route, "handler", None))
    if declared is not None and declared.roles is not None:
        header = request.headers.get("Authorization")
        client = client_key(request.remote)
        failures = request.app[AUTH_FAILURES]
        failures.check(client)
        try:
            who = await authenticate_request(request, header)
        except Problem:
            if header is not None:  # a wrong token, not a missing one: the guesses are what is limited
                failures.failed(client)
            raise
        request.app[LIMITER].take(who.token_id)
        request[PRINCIPAL] = who
    response: web.StreamResponse = await handler(request)
    return response


def create_app(pool: Any, settings: Settings, engine: Any = None, watchlist: Any = None,
               read_pool: Any = None) -> web.Application:
    app = web.Application(client_max_size=settings.api.max_body_bytes, middlewares=[measure, problems, authorize])
    app[POOL], app[SETTINGS], app[ENGINE], app[WATCHLIST] = pool, settings, engine, watchlist
    app[READ_POOL] = read_pool if read_pool is not None else pool
    app[TOKENS] = TokenCheck(pool, app[READ_POOL])
    app[MAX_BODY] = settings.api.max_body_bytes
    app[LIMITER] = RateLimiter(settings.api.rate_per_s, settings.api.burst)
    app[AUTH_FAILURES] = FailureLimiter(settings.api.auth_failures_per_s, settings.api.auth_failure_burst)
    app[ROUTE_TABLE] = {r.handler: r for r in ROUTES}
    app[OPENAPI] = document(ROUTES)
    for r in ROUTES:
        app.router.add_route(r.method, router_path(r.path), r.handler)
    app.on_response_prepare.append(security_headers)
    console.mount(app)  # the web console under /console/ (tracker_watch/console/)
    return app


class ApiServer:
    def __init__(self, pool: Any, settings: Settings, engine: Any = None, watchlist: Any = None,
                 read_pool: Any = None) -> None:
        self.app = create_app(pool, settings, engine, watchlist, read_pool)
        self.settings = settings
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        host, port = parse_endpoint("api.listen", self.settings.api.listen)
        self._runner = ProblemRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        _log.info("api_listening", address=f"{host}:{self.port}")

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
