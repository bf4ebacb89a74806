"""The frames the writer process and its preparer speak on pipes: a 4-byte big-endian length, a MessagePack body."""

from __future__ import annotations

import asyncio
import struct
from typing import IO, Any

import msgspec

FRAME = struct.Struct(">I")


def frame(value: Any) -> bytes:
    body = msgspec.msgpack.encode(value)
    return FRAME.pack(len(body)) + body


async def read_frame(reader: asyncio.StreamReader) -> Any:
    """The next frame's value; None at the end of the stream."""
    try:
        head = await reader.readexactly(FRAME.size)
        return msgspec.msgpack.decode(await reader.readexactly(FRAME.unpack(head)[0]))
    except asyncio.IncompleteReadError:
        return None


def read_frame_blocking(stream: IO[bytes]) -> Any:
    """`read_frame` from a blocking file (the preparer's stdin); None at its end."""
    head = stream.read(FRAME.size)
    if len(head) < FRAME.size:
        return None
    (size,) = FRAME.unpack(head)
    body = stream.read(size)
    return msgspec.msgpack.decode(body) if len(body) == size else None
