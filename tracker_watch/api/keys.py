"""Typed keys for what the application and each request carry."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tracker_watch.api.auth import FailureLimiter, Principal, RateLimiter, TokenCheck
from tracker_watch.config import Settings

POOL: web.AppKey[Any] = web.AppKey("pool")  # the primary: every write, and reads of requests that write
READ_POOL: web.AppKey[Any] = web.AppKey("read_pool")  # database.read_dsn's replica, or the primary without one
SETTINGS = web.AppKey("settings", Settings)
ENGINE: web.AppKey[Any] = web.AppKey("engine")  # the daemon's swarm engine, or None when the API runs without one
MAX_BODY = web.AppKey("max_body", int)
LIMITER = web.AppKey("limiter", RateLimiter)
AUTH_FAILURES = web.AppKey("auth_failures", FailureLimiter)
TOKENS = web.AppKey("tokens", TokenCheck)  # token checks: on the primary (the replica only while it is away)
# the daemon's watchlist (its `rows`: the ids of the targets this node runs), or None
WATCHLIST: web.AppKey[Any] = web.AppKey("watchlist")
ROUTE_TABLE: web.AppKey[dict[Any, Any]] = web.AppKey("routes")
OPENAPI: web.AppKey[dict[str, Any]] = web.AppKey("openapi")
PRINCIPAL = web.RequestKey("principal", Principal)
READ_ONLY = ("GET", "HEAD")


def db(request: web.Request) -> Any:
    """The pool a request's queries go to: a read-only request (GET, HEAD) reads from the replica when one is
    configured (`database.read_dsn`), anything else uses the primary, so what it reads and writes agree."""
    key = READ_POOL if request.method in READ_ONLY else POOL
    return request.config_dict[key]


async def authenticate_request(request: web.Request, header: str | None) -> Principal:
    """The principal of a request's bearer token (`Authorization` header form), checked on the primary so a
    revocation counts at once; a read-only request falls back to the replica only while the primary is away."""
    return await request.config_dict[TOKENS].check(header, replica_ok=request.method in READ_ONLY)
