"""Request parsing and response shaping shared by the handlers: JSON bodies validated against their schema,
query parameters with precise errors, opaque cursors, and JSON output (UTC times, hex bytes)."""

from __future__ import annotations

import base64
import binascii
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


def principal(request: web.Request) -> Principal:
    p: Principal = request[PRINCIPAL]
    return p


def require(request: web.Request, *roles: str) -> Principal:
    p = principal(request)
    if p.role not in roles:
        raise Problem(403, f"a {p.role} token may not do this (needs: {', '.join(roles)})")
    return p


async def json_body(request: web.Request, schema: dict[str, Any]) -> Any:
    if request.content_type != "application/json":
        raise Problem(415, f"send the body as application/json, not {request.content_type or 'nothing'}")
    raw = await request.read()
    try:
        doc = json.loads(raw)
    except UnicodeDecodeError:
        raise Problem(400, "the body is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise Problem(400, f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    if _bad_text(doc):
        raise Problem(400, "text must be valid Unicode without NUL characters (\\u0000) or unpaired surrogates")
    validator = _validators.setdefault(id(schema), Draft202012Validator(schema))
    error = next(iter(sorted(validator.iter_errors(doc), key=lambda e: list(e.path))), None)
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(the body)"
        raise Problem(400, f"{where}: {error.message[:300]}", errors=[{"field": where, "detail": error.message[:300]}])
    return doc


def _bad_text(value: Any) -> bool:
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
        return any(_bad_text(k) or _bad_text(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_bad_text(v) for v in value)
    return False


def query_int(request: web.Request, name: str, default: int | None = None, lo: int = 1, hi: int = 2**62) -> int | None:
    text = request.query.get(name)
    if text is None:
        return default
    if not text.isdigit() or not lo <= int(text) <= hi:
        raise Problem(400, f"query parameter {name}: expected an integer from {lo} to {hi}, got {text[:40]!r}")
    return int(text)


def query_time(request: web.Request, name: str) -> datetime | None:
    text = request.query.get(name)
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise Problem(400, f"query parameter {name}: {text[:40]!r} is not an ISO-8601 time") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def query_ip(request: web.Request, name: str = "ip") -> str | None:
    text = request.query.get(name)
    if text is None:
        return None
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise Problem(400, f"query parameter {name}: {text[:60]!r} is not an IP address") from None


def query_choice(request: web.Request, name: str, choices: list[str]) -> str | None:
    text = request.query.get(name)
    if text is not None and text not in choices:
        raise Problem(400, f"query parameter {name}: must be one of {', '.join(choices)}, got {text[:40]!r}")
    return text


def path_id(request: web.Request, name: str = "id") -> int:
    text = request.match_info[name]
    if not text.isdigit() or not 1 <= int(text) <= 2**62:
        raise Problem(404, f"no such {name}: {text[:40]!r}")
    return int(text)


def encode_cursor(*values: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps([plain(v) for v in values]).encode()).decode().rstrip("=")


def decode_cursor(request: web.Request, arity: int) -> list[Any] | None:
    text = request.query.get("cursor")
    if text is None:
        return None
    try:
        values = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise Problem(400, "query parameter cursor: not a cursor this API returned") from None
    if not isinstance(values, list) or len(values) != arity:
        raise Problem(400, "query parameter cursor: not a cursor this API returned")
    return values


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
