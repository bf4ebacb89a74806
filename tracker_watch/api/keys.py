"""Typed keys for what the application and each request carry."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tracker_watch.api.auth import FailureLimiter, Principal, RateLimiter
from tracker_watch.config import Settings

POOL: web.AppKey[Any] = web.AppKey("pool")
SETTINGS = web.AppKey("settings", Settings)
ENGINE: web.AppKey[Any] = web.AppKey("engine")  # the daemon's swarm engine, or None when the API runs without one
MAX_BODY = web.AppKey("max_body", int)
LIMITER = web.AppKey("limiter", RateLimiter)
AUTH_FAILURES = web.AppKey("auth_failures", FailureLimiter)
# the daemon's watchlist (its `rows`: the ids of the targets this node runs), or None
WATCHLIST: web.AppKey[Any] = web.AppKey("watchlist")
ROUTE_TABLE: web.AppKey[dict[Any, Any]] = web.AppKey("routes")
OPENAPI: web.AppKey[dict[str, Any]] = web.AppKey("openapi")
PRINCIPAL = web.RequestKey("principal", Principal)
