"""Request parsing and response shaping shared by the handlers: JSON bodies validated against their schema,
query parameters with precise errors, opaque cursors, and JSON output (UTC times, hex bytes)."""

from __future__ import annotations

import ipaddress
import json
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from jsonschema import Draft202012Validator

from tracker_watch.api.auth import Principal
from tracker_watch.api.errors import Problem
from tracker_watch.api.keys import PRINCIPAL

_validators: dict[int, Draft202012Validator] = {}
MAX_DEPTH = 32  # the deepest request schema nests 4; json.loads recurses and 2,000 levels overflow it


def principal(request: web.Request) -> Principal:
    p: Principal = request[PRINCIPAL]
    return p


def require(request: web.Request, *roles: str) -> Principal:
    p = principal(request)
    if p.role not in roles:
        raise Problem(403, f"a {p.role} token may not do this (needs: {', '.join(roles)})")
    return p


def require_json(request: web.Request) -> None:
    if request.content_type != "application/json":
        raise Problem(415, f"send the body as application/json, not {request.content_type[:100] or 'nothing'}")


async def json_body(request: web.Request, schema: dict[str, Any]) -> Any:
    require_json(request)
    doc = parse_json(await request.read())
    validate(doc, schema)
    return doc


def parse_json(raw: bytes) -> Any:
    """JSON as the schemas understand it: no NaN or Infinity, integers of at most 20 digits, nesting at most
    MAX_DEPTH deep, text PostgreSQL can store."""
    try:
        doc = json.loads(raw, parse_constant=_no_constant, parse_int=_bounded_int)
    except UnicodeDecodeError:
        raise Problem(400, "the body is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise Problem(400, f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except ValueError as exc:  # from the hooks below
        raise Problem(400, f"malformed JSON: {exc}") from None
    except RecursionError:
        raise Problem(400, f"JSON nested deeper than {MAX_DEPTH} levels") from None
    if _depth(doc) > MAX_DEPTH:
        raise Problem(400, f"JSON nested deeper than {MAX_DEPTH} levels")
    if bad_text(doc):
        raise Problem(400, "text must be valid Unicode without NUL characters (\\u0000) or unpaired surrogates")
    return doc


def validate(doc: Any, schema: dict[str, Any]) -> None:
    """A 400 naming the first field that breaks the schema, and listing (up to 100 of) all of them."""
    validator = _validators.setdefault(id(schema), Draft202012Validator(schema))
    found = sorted(validator.iter_errors(doc), key=lambda e: [(0, p, "") if isinstance(p, int) else (1, 0, p)
                                                              for p in e.absolute_path])
    if found:
        errors = [{"field": "/".join(str(p) for p in e.absolute_path) or "(the body)", "detail": _message(e)}
                  for e in found[:100]]
        raise Problem(400, f"{errors[0]['field']}: {errors[0]['detail']}", errors=errors)


def _message(error: Any) -> str:
    """jsonschema's messages quote the offending value: for long values say what was expected instead (a
    20 MB string must not come back)."""
    if error.validator in ("maxLength", "minLength", "pattern", "format", "oneOf", "anyOf", "maxItems"):
        described = error.schema.get("description") if isinstance(error.schema, dict) else None
        if described:
            return f"expected {described}"
        value = error.validator_value if isinstance(error.validator_value, (int, str)) else ""
        return f"does not satisfy {error.validator} {value}".rstrip()
    return str(error.message[:300])


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _bounded_int(text: str) -> int:
    if len(text) > 20:
        raise ValueError(f"an integer of {len(text)} digits is out of range")
    return int(text)


def _depth(doc: Any) -> int:
    """How deeply the document nests (iteratively: a recursive walk could itself overflow)."""
    deepest, stack = 0, [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            deepest = max(deepest, depth)
            if depth > MAX_DEPTH:
                return depth
            stack.extend((v, depth + 1) for v in (value.values() if isinstance(value, dict) else value))
    return deepest


def bad_text(value: Any) -> bool:
    """Text PostgreSQL cannot store: NUL, or unpaired surrogates (JSON allows both)."""
    if isinstance(value, str):
        if "\x00" in value:
            return True
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(bad_text(k) or bad_text(v) for k, v in value.items())
    if isinstance(value, list):
        return any(bad_text(v) for v in value)
    return False


def plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address, ipaddress.IPv4Network,
                          ipaddress.IPv6Network)):
        return str(value)
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if value is not None and not isinstance(value, (str, int, float, bool)):
        return str(value)
    return value


def reply(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=json.dumps(plain(data)).encode(), content_type="application/json")


async def audit(conn: Any, who: Principal, action: str, obj: str, **detail: Any) -> None:
    await conn.execute("INSERT INTO audit_log (actor, action, object, detail) VALUES ($1, $2, $3, $4)",
                       who.actor, action, obj, json.dumps(plain(detail)))
