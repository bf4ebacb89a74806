"""What a registration names (hex infohash, magnet, .torrent), parsed by the domain and checked at the edge.

The parser is the authority on what is a torrent; whatever it refuses, however it refuses it, is the
client's file and a 400. What it returns is then range-checked against the columns it will be stored in,
so no number or string from an upload can make PostgreSQL fail the request.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from tracker_watch import log
from tracker_watch.api.common import bad_text
from tracker_watch.api.errors import Problem
from tracker_watch.domain.targets import TargetParseError, TargetSpec, parse_target

_log = log.get("tracker_watch.api")
INT32_MAX, INT64_MAX = 2**31 - 1, 2**63 - 1
INPUTS = ("infohash", "magnet", "torrent_base64")


def spec_of(item: dict[str, Any]) -> TargetSpec:
    given = [k for k in INPUTS if k in item]
    if len(given) != 1:
        raise Problem(400, "give exactly one of infohash, magnet, torrent_base64"
                      + (f" (got {', '.join(given)})" if given else ""))
    field = given[0]
    value: str | bytes = item[field]
    if field == "torrent_base64":
        try:
            value = base64.b64decode(item[field], validate=True)
        except (binascii.Error, ValueError):
            raise Problem(400, "torrent_base64: not valid base64") from None
    try:
        spec = parse_target(value)
    except TargetParseError as exc:
        raise Problem(400, f"{field}: {str(exc)[:300]}") from None
    except (ValueError, TypeError, LookupError, ArithmeticError, RecursionError) as exc:
        # the parser let a malformed file through to a Python error: still the file's fault, but a parser bug
        _log.warning("target_parse_unexpected", field=field, error=type(exc).__name__)
        raise Problem(400, f"{field}: not a valid .torrent file, magnet link or infohash") from None
    check_spec(field, spec)
    return spec


def check_spec(field: str, spec: TargetSpec) -> None:
    """What the targets table can hold: bigint and integer ranges, text without NUL."""
    meta = spec.meta
    if meta is not None:
        for name, value, hi, lo in (("total size", meta.total_size, INT64_MAX, 0),
                                    ("piece length", meta.piece_length, INT32_MAX, 1),
                                    ("number of pieces", meta.num_pieces, INT32_MAX, 0)):
            if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
                raise Problem(400, f"{field}: the torrent's {name} is out of range ({lo} to {hi})")
    texts = [spec.display_name, *spec.trackers, meta.name if meta is not None else None]
    if bad_text([t for t in texts if t is not None]):
        raise Problem(400, f"{field}: its name or a tracker URL contains a NUL character or invalid Unicode")
