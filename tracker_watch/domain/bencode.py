"""Strict bencode (BEP 3) decoding and encoding. Pure; errors say where the input went wrong.

`decode_torrent` also returns the exact bytes of the top-level `info` value, because an infohash is
the hash of those bytes as they were sent, not of a re-encoding.

Strict means: never more lenient than libtorrent's decoder (tests/domain/test_bencode.py checks that
differentially). Integers are ASCII `-?(0|[1-9][0-9]*)` within int64, as libtorrent reads them; a key
repeated in one dictionary is refused, because libtorrent would read the first copy and a naive reader
the last, and an infohash must not depend on whose reader looks.
"""

from __future__ import annotations

import re
from typing import Any

Value = int | bytes | list[Any] | dict[bytes, Any]


class BencodeError(ValueError):
    """Input is not valid bencode; the message gives the byte offset."""


def decode(data: bytes) -> Value:
    value, end = _decode(data, 0, 0)
    if end != len(data):
        raise BencodeError(f"trailing data at byte {end} of {len(data)}")
    result: Value = value
    return result


def decode_torrent(data: bytes) -> tuple[dict[bytes, Any], bytes]:
    """Decode a .torrent file; return (top-level dict, raw bytes of its info dict)."""
    if not data.startswith(b"d"):
        raise BencodeError("a .torrent file must start with a dictionary")
    spans: list[tuple[int, int]] = []
    top, end = _decode(data, 0, 0, info_spans=spans)
    if end != len(data):
        raise BencodeError(f"trailing data at byte {end} of {len(data)}")
    assert isinstance(top, dict)
    if not spans or not isinstance(top.get(b"info"), dict):
        raise BencodeError("no 'info' dictionary")
    return top, data[spans[0][0]:spans[0][1]]


_MAX_DEPTH = 64
_INTEGER = re.compile(rb"-?(0|[1-9][0-9]*)")
_INT64 = range(-(2**63) + 1, 2**63)  # libtorrent reads -2**63 as 0


def _decode(data: bytes, pos: int, depth: int, info_spans: list[tuple[int, int]] | None = None) -> tuple[Any, int]:
    if depth > _MAX_DEPTH:
        raise BencodeError(f"nesting deeper than {_MAX_DEPTH} at byte {pos}")
    if pos >= len(data):
        raise BencodeError(f"truncated: expected a value at byte {pos}")
    c = data[pos:pos + 1]
    if c == b"i":
        end = data.find(b"e", pos)
        if end < 0:
            raise BencodeError(f"truncated integer at byte {pos}")
        text = data[pos + 1:end]
        if not _INTEGER.fullmatch(text) or text == b"-0":
            raise BencodeError(f"malformed integer at byte {pos}")
        number = int(text)
        if number not in _INT64:
            raise BencodeError(f"integer at byte {pos} does not fit in 64 bits")
        return number, end + 1
    if c.isdigit():
        colon = data.find(b":", pos)
        if colon < 0 or colon - pos > 18 or not data[pos:colon].isdigit():
            raise BencodeError(f"malformed string length at byte {pos}")
        length = int(data[pos:colon])
        start, end = colon + 1, colon + 1 + length
        if end > len(data):
            raise BencodeError(f"truncated: string at byte {pos} needs {length} bytes, {len(data) - start} left")
        return data[start:end], end
    if c == b"l":
        items, pos = [], pos + 1
        while data[pos:pos + 1] != b"e":
            item, pos = _decode(data, pos, depth + 1)
            items.append(item)
        return items, pos + 1
    if c == b"d":
        result: dict[bytes, Any] = {}
        pos += 1
        while data[pos:pos + 1] != b"e":
            key_at = pos
            key, pos = _decode(data, pos, depth + 1)
            if not isinstance(key, bytes):
                raise BencodeError(f"dictionary key at byte {key_at} is not a string")
            if key in result:
                raise BencodeError(f"dictionary key {key[:40]!r} repeated at byte {key_at}")
            start = pos
            result[key], pos = _decode(data, pos, depth + 1)
            if info_spans is not None and key == b"info":
                info_spans.append((start, pos))
        return result, pos + 1
    raise BencodeError(f"unexpected byte {c!r} at {pos}")


def encode(value: Value | str) -> bytes:
    if isinstance(value, bool):
        raise TypeError("bool is not bencodable")
    if isinstance(value, int):
        return b"i%de" % value
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, bytes):
        return b"%d:%s" % (len(value), value)
    if isinstance(value, list):
        return b"l" + b"".join(encode(v) for v in value) + b"e"
    if isinstance(value, dict):
        return b"d" + b"".join(encode(k) + encode(v) for k, v in sorted(value.items())) + b"e"
    raise TypeError(f"cannot bencode {type(value).__name__}")
