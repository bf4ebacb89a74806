"""Routes are declared once, with what they accept and return; the router and the OpenAPI 3.1 document are
both built from these declarations, so the document cannot drift from what the server serves.

Request bodies are validated against the declared JSON Schema before a handler runs (unknown fields,
wrong types and missing fields become a 400 naming the field); responses are documented with the same
schemas, which schemathesis checks against the live server in the tests.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# status → (media type, schema, description), or, for a status served in several media types,
# status → {media type: (schema, description)}
ResponseSpec = tuple[str, dict[str, Any] | None, str] | dict[str, tuple[dict[str, Any], str]]
ROLES = ("rightsholder", "operator", "isp")


@dataclass(frozen=True)
class Param:
    name: str
    where: str  # "path" | "query"
    schema: dict[str, Any]
    description: str = ""
    required: bool = False


@dataclass
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    roles: tuple[str, ...] | None  # None: no authentication
    params: tuple[Param, ...] = ()
    body: dict[str, Any] | None = None  # JSON request body schema
    multipart: dict[str, Any] | None = None  # multipart/form-data schema (alternative to body)
    responses: dict[int, ResponseSpec] = field(default_factory=dict)
    tag: str = "api"

    @property
    def operation_id(self) -> str:
        return self.handler.__name__


ROUTES: list[Route] = []


def route(method: str, path: str, summary: str, roles: tuple[str, ...] | None = ROLES, params: tuple[Param, ...] = (),
          body: dict[str, Any] | None = None, multipart: dict[str, Any] | None = None,
          responses: Mapping[int, ResponseSpec] | None = None,
          tag: str = "api") -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        ROUTES.append(Route(method, path, handler, summary, roles, params, body, multipart, dict(responses or {}), tag))
        return handler
    return register


def path_param(name: str, description: str = "") -> Param:
    return Param(name, "path", {"type": "integer", "minimum": 1, "maximum": 2**62}, description, required=True)


def router_path(path: str) -> str:
    """Ids in paths are ASCII digits to the router, so /targets/bulk never also matches /targets/{id} (its
    405 would otherwise advertise that route's methods) and non-numbers are simply no such endpoint."""
    return re.sub(r"\{(id)\}", r"{\1:[0-9]+}", path)


def openapi_path(path: str) -> str:
    return re.sub(r"\{(\w+)(:[^}]*)?\}", r"{\1}", path)
