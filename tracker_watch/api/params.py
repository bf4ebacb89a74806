"""Query and path parameters, checked before anything reaches PostgreSQL.

One helper per kind, used by every handler, so a class of bad input is refused in one place:
- integers are ASCII digits only (`'²'.isdigit()` and `int('٣')` both accept non-ASCII digits), at most 19 of
  them (`int()` of 5,000 digits raises), within the declared range (bigint);
- times are ISO 8601; one whose UTC equivalent falls outside what Python and a timestamptz hold
  (0001-01-01T00:00+01:00) is clamped to the earliest or latest instant, which selects the same rows;
- IP addresses are plain IPv4/IPv6, no zone id (`fe80::1%eth0` parses in Python, not as inet);
- cursors have one strict shape each, stated as a pattern in the OpenAPI document, and every string of that
  shape is a valid position (so a forged cursor is at worst an empty page, never an error or a 5xx).
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from tracker_watch.api.errors import Problem

ID_MAX = 2**62
_DIGITS = re.compile(r"[0-9]{1,19}")  # on str, [0-9] is ASCII only (\d would take every Unicode digit)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EARLIEST = datetime.min.replace(tzinfo=UTC)
LATEST = datetime.max.replace(tzinfo=UTC)

# the OpenAPI schemas of the parameters below: exact, so a schema-valid value is always accepted
ID_CURSOR = {"type": "string", "pattern": "^[1-9][0-9]{0,18}$", "description": "next_cursor of the previous page"}
TIME_CURSOR = {"type": "string", "pattern": "^[0-9]{1,17}-[0-9a-f]{32}$",
               "description": "next_cursor of the previous page"}
IP = {"type": "string", "maxLength": 45, "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}],
      "description": "an IPv4 or IPv6 address (no zone id)"}
TIME = {"type": "string", "format": "date-time", "maxLength": 64,
        "description": "RFC 3339 (a date alone, or no offset, is taken as UTC)"}
_LEAP_SECOND = re.compile(r"(?<=[0-9]{2}:[0-9]{2}):60(\.[0-9]+)?")  # RFC 3339 allows it, Python does not
_ID_CURSOR = re.compile(ID_CURSOR["pattern"])
_TIME_CURSOR = re.compile(TIME_CURSOR["pattern"])


def ascii_int(text: str, lo: int, hi: int) -> int | None:
    """The integer `text` spells in ASCII digits, if it is within [lo, hi]; else None."""
    if not _DIGITS.fullmatch(text):
        return None
    value = int(text)
    return value if lo <= value <= hi else None


def query_int(request: web.Request, name: str, default: int | None = None, lo: int = 1,
              hi: int = ID_MAX) -> int | None:
    text = request.query.get(name)
    if text is None:
        return default
    value = ascii_int(text, lo, hi)
    if value is None:
        raise Problem(400, f"query parameter {name}: expected an integer from {lo} to {hi} in ASCII digits")
    return value


def path_id(request: web.Request, name: str = "id") -> int:
    value = ascii_int(request.match_info[name], 1, ID_MAX)
    if value is None:
        raise Problem(404, f"no such {name}: ids are integers from 1 to {ID_MAX}")
    return value


def parse_time(text: str) -> datetime | None:
    """An ISO 8601 time as an aware UTC datetime (naive means UTC), clamped to what PostgreSQL can store."""
    if len(text) > 64 or not text.isascii():
        return None
    try:
        value = datetime.fromisoformat(_LEAP_SECOND.sub(":59.999999", text).replace("Z", "+00:00")
                                       .replace("z", "+00:00"))
    except ValueError:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:  # before year 1 or after 9999 once in UTC
        offset = value.utcoffset() or timedelta(0)
        return EARLIEST if offset > timedelta(0) else LATEST


def query_time(request: web.Request, name: str) -> datetime | None:
    text = request.query.get(name)
    if text is None:
        return None
    value = parse_time(text)
    if value is None:
        raise Problem(400, f"query parameter {name}: not an ISO 8601 time (e.g. 2026-01-31T12:00:00Z)")
    return value


def query_ip(request: web.Request, name: str = "ip") -> str | None:
    text = request.query.get(name)
    if text is None:
        return None
    try:
        if len(text) > 45 or "%" in text or not text.isascii():
            raise ValueError
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise Problem(400, f"query parameter {name}: not an IPv4 or IPv6 address") from None


def query_choice(request: web.Request, name: str, choices: list[str]) -> str | None:
    text = request.query.get(name)
    if text is not None and text not in choices:
        raise Problem(400, f"query parameter {name}: must be one of {', '.join(choices)}")
    return text


def id_cursor(value: int) -> str:
    return str(value)


def query_id_cursor(request: web.Request) -> int | None:
    """The id a page continues from (after it, or before it for newest-first lists)."""
    text = request.query.get("cursor")
    if text is None:
        return None
    if not _ID_CURSOR.fullmatch(text):
        raise Problem(400, "query parameter cursor: not a cursor this API returned")
    return min(int(text), ID_MAX)  # past the largest id every position is the same


def time_cursor(at: datetime, row_id: Any) -> str:
    micros = (at - _EPOCH) // timedelta(microseconds=1)
    return f"{min(max(micros, 0), 10**17 - 1)}-{uuid.UUID(str(row_id)).hex}"  # the pattern's range (to 5138)


def query_time_cursor(request: web.Request) -> tuple[datetime, uuid.UUID] | None:
    """The (time, id) a time-ordered page continues after."""
    text = request.query.get("cursor")
    if text is None:
        return None
    if not _TIME_CURSOR.fullmatch(text):
        raise Problem(400, "query parameter cursor: not a cursor this API returned")
    micros, row_id = text.split("-")
    return _EPOCH + timedelta(microseconds=int(micros)), uuid.UUID(hex=row_id)
