"""The spool's record format: `MAGIC | length | crc32 | payload`, and reading it back through damage."""

from __future__ import annotations

import struct
import zlib

MAGIC = b"TWs1"
_HEADER = struct.Struct(">4sII")  # magic, payload length, crc32 of payload
MAX_RECORD = 1 << 20  # an observation is < 2 KiB; anything longer is damage


def record(payload: bytes) -> bytes:
    return _HEADER.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


def parse(data: bytes, limit: int) -> tuple[list[bytes], int, int]:
    """Valid records at the start of `data` (at most `limit`), bytes consumed, damaged records skipped."""
    out: list[bytes] = []
    i, bad, n = 0, 0, len(data)
    while i < n and len(out) < limit:
        if n - i < _HEADER.size:
            return out, n, bad + 1  # a torn header at the end of a finished segment
        magic, length, crc = _HEADER.unpack_from(data, i)
        end = i + _HEADER.size + length
        if magic == MAGIC and length <= MAX_RECORD and end <= n and zlib.crc32(data[i + _HEADER.size:end]) == crc:
            out.append(data[i + _HEADER.size:end])
            i = end
            continue
        bad += 1  # damaged: resynchronise on the next MAGIC that starts a valid record
        i = _next_valid(data, i + 1)
    return out, i, bad


def _next_valid(data: bytes, start: int) -> int:
    i = data.find(MAGIC, start)
    while i >= 0:
        if len(data) - i >= _HEADER.size:
            _, length, crc = _HEADER.unpack_from(data, i)
            end = i + _HEADER.size + length
            if length <= MAX_RECORD and end <= len(data) and zlib.crc32(data[i + _HEADER.size:end]) == crc:
                return i
        i = data.find(MAGIC, i + 1)
    return len(data)

