"""The OpenAPI 3.1 document, built from the route declarations (api/registry.py)."""

from __future__ import annotations

from typing import Any

from tracker_watch import __version__
from tracker_watch.api import schemas as s
from tracker_watch.api.registry import ResponseSpec, Route, openapi_path

PROBLEM_JSON = "application/problem+json"
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
COMMON_ERRORS = {400: "bad input (the detail says which field and why)", 401: "no token, or revoked",
                 403: "this token's role may not do this", 404: "no such object visible to this token",
                 406: "not acceptable", 413: "request body too large", 415: "unsupported media type",
                 422: "valid JSON that cannot be processed", 429: "rate limit exceeded (see Retry-After)"}


def document(routes: list[Route]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for r in routes:
        paths.setdefault(openapi_path(r.path), {})[r.method.lower()] = _operation(r)
    return {
        "openapi": "3.1.0",
        "info": {"title": "tracker-watch", "version": __version__,
                 "description": "Register works' swarms, follow the evidence and strikes, fetch ISP notices. "
                                "Errors are application/problem+json (RFC 9457)."},
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
                       "schemas": {"Problem": s.PROBLEM}},
    }


def _operation(r: Route) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": r.operation_id, "summary": r.summary, "tags": [r.tag],
                          "responses": {str(code): _response(spec) for code, spec in sorted(r.responses.items())}}
    if r.params:
        op["parameters"] = [{"name": p.name, "in": p.where, "required": p.required or p.where == "path",
                             "schema": p.schema, **({"description": p.description} if p.description else {})}
                            for p in r.params]
    content = {}
    if r.body is not None:
        content["application/json"] = {"schema": r.body}
    if r.multipart is not None:
        content["multipart/form-data"] = {"schema": r.multipart}
    if content:
        op["requestBody"] = {"required": True, "content": content}
    if r.roles is not None:
        op["security"] = [{"bearer": []}]
        op["description"] = f"Roles: {', '.join(r.roles)}."
        for code, text in COMMON_ERRORS.items():
            op["responses"].setdefault(str(code), _response((PROBLEM_JSON, PROBLEM_REF, text)))
        op["responses"]["401"]["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}, "required": True}}
        op["responses"]["429"]["headers"] = {"Retry-After": {"schema": {"type": "string", "pattern": "^[0-9]+$"},
                                                             "required": True}}
    return op


def _response(spec: ResponseSpec) -> dict[str, Any]:
    if isinstance(spec, dict):
        return {"description": "; ".join(text for _, text in spec.values()),
                "content": {media: {"schema": schema} for media, (schema, _) in spec.items()}}
    media, schema, text = spec
    if schema is None:
        return {"description": text}
    return {"description": text, "content": {media: {"schema": schema}}}
