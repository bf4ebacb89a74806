"""BitTorrent peer-wire messages (BEP 3, BEP 6 fast extension, BEP 10 extension protocol). Pure, no I/O.

Every length is bounded before anything is buffered: a frame may be at most a 16 KiB block plus its
header (16 KiB + 13 bytes with the length prefix), except a bitfield, which is sized by the piece count.
Anything malformed raises `WireError`, and nothing else: peers are hostile input.
"""

from __future__ import annotations

import ipaddress
import secrets
import struct
from dataclasses import dataclass
from typing import Any

from tracker_watch.domain import bencode

PROTOCOL = b"\x13BitTorrent protocol"
HANDSHAKE_LEN = 68
BLOCK = 16 * 1024                   # the block size every client serves
MAX_REQUEST = 2**17                 # longest request a peer may send us; clients drop longer ones
MAX_BODY = 1 + 8 + BLOCK            # piece message: id, index, begin, one block (16 KiB + 13 with the prefix)
MAX_EXT_NAME = 256                  # longest client name (`v`) we keep

# reserved bits: (byte, mask)
EXTENSION_BIT = (5, 0x10)           # BEP 10
FAST_BIT = (7, 0x04)                # BEP 6
DHT_BIT = (7, 0x01)                 # BEP 5

CHOKE, UNCHOKE, INTERESTED, NOT_INTERESTED, HAVE, BITFIELD, REQUEST, PIECE, CANCEL, PORT = range(10)
SUGGEST, HAVE_ALL, HAVE_NONE, REJECT, ALLOWED_FAST = 0x0D, 0x0E, 0x0F, 0x10, 0x11
EXTENDED = 20
_NO_PAYLOAD = {CHOKE, UNCHOKE, INTERESTED, NOT_INTERESTED, HAVE_ALL, HAVE_NONE}
_ONE_INDEX = {HAVE, SUGGEST, ALLOWED_FAST}
_BLOCK_REF = {REQUEST, CANCEL, REJECT}


class WireError(ValueError):
    """The peer sent something the protocol does not allow; the message says what."""


@dataclass(frozen=True)
class Handshake:
    reserved: bytes
    info_hash: bytes
    peer_id: bytes

    def has(self, bit: tuple[int, int]) -> bool:
        return bool(self.reserved[bit[0]] & bit[1])


@dataclass(frozen=True)
class Message:
    """One decoded message. `kind` is the message id (or -1 for keep-alive); the other fields are set
    only for the kinds that carry them: `index` (have, suggest, allowed_fast, request, piece, reject,
    cancel), `begin`/`length` (request, reject, cancel; piece: len(data)), `data` (bitfield, piece,
    extended payload, unknown ids), `ext_id` (extended), `port` (port)."""

    kind: int
    index: int = 0
    begin: int = 0
    length: int = 0
    data: bytes = b""
    ext_id: int = 0
    port: int = 0


KEEPALIVE = Message(-1)


def reserved_bits(*bits: tuple[int, int]) -> bytes:
    out = bytearray(8)
    for byte, mask in bits:
        out[byte] |= mask
    return bytes(out)


def new_peer_id(prefix: bytes = b"-TW0001-") -> bytes:
    """A fresh Azureus-style peer id. Use one per verification: libtorrent and aria2 drop a connection
    whose peer id they already have connected (another probe, or our own libtorrent session)."""
    return prefix[:20] + secrets.token_hex(10).encode()[:20 - len(prefix[:20])]


def encode_handshake(info_hash: bytes, peer_id: bytes, reserved: bytes = bytes(8)) -> bytes:
    if len(info_hash) != 20 or len(peer_id) != 20 or len(reserved) != 8:
        raise ValueError("a handshake needs a 20-byte infohash, a 20-byte peer id and 8 reserved bytes")
    return PROTOCOL + reserved + info_hash + peer_id


def parse_handshake(data: bytes) -> Handshake:
    if len(data) != HANDSHAKE_LEN:
        raise WireError(f"handshake is {len(data)} bytes, not {HANDSHAKE_LEN}")
    if data[:20] != PROTOCOL:
        raise WireError("not a BitTorrent handshake")
    return Handshake(reserved=data[20:28], info_hash=data[28:48], peer_id=data[48:68])


def bitfield_len(num_pieces: int) -> int:
    return (num_pieces + 7) // 8


def max_body(num_pieces: int) -> int:
    """Longest message body (after the 4-byte length prefix) a peer may send for this torrent."""
    return max(MAX_BODY, 1 + bitfield_len(num_pieces))


def check_length(length: int, num_pieces: int) -> None:
    if length > max_body(num_pieces):
        raise WireError(f"message of {length} bytes exceeds the limit of {max_body(num_pieces)}")


def decode_body(body: bytes, num_pieces: int) -> Message:
    """Decode one message body (without its length prefix); validate indexes against `num_pieces`."""
    if not body:
        return KEEPALIVE
    check_length(len(body), num_pieces)
    kind, rest = body[0], body[1:]
    if kind in _NO_PAYLOAD:
        _expect(kind, rest, 0)
        return Message(kind)
    if kind in _ONE_INDEX:
        _expect(kind, rest, 4)
        return Message(kind, index=_index(rest, num_pieces))
    if kind in _BLOCK_REF:
        _expect(kind, rest, 12)
        index = _index(rest, num_pieces)
        begin, length = struct.unpack(">II", rest[4:12])
        if not 0 < length <= MAX_REQUEST:
            raise WireError(f"block length {length} outside 1..{MAX_REQUEST}")
        return Message(kind, index=index, begin=begin, length=length)
    if kind == BITFIELD:
        _expect(kind, rest, bitfield_len(num_pieces))
        return Message(kind, data=rest)
    if kind == PIECE:
        if len(rest) < 8:
            raise WireError("piece message shorter than its header")
        begin = struct.unpack(">I", rest[4:8])[0]
        return Message(kind, index=_index(rest, num_pieces), begin=begin, length=len(rest) - 8, data=rest[8:])
    if kind == PORT:
        _expect(kind, rest, 2)
        return Message(kind, port=struct.unpack(">H", rest)[0])
    if kind == EXTENDED:
        if not rest:
            raise WireError("extended message without an extension id")
        return Message(kind, ext_id=rest[0], data=rest[1:])
    return Message(kind, data=rest)  # unknown ids (v2 hash messages, …) are bounded and skipped


def _expect(kind: int, rest: bytes, size: int) -> None:
    if len(rest) != size:
        raise WireError(f"message {kind} carries {len(rest)} bytes, not {size}")


def _index(rest: bytes, num_pieces: int) -> int:
    index: int = struct.unpack(">I", rest[:4])[0]
    if index >= num_pieces:
        raise WireError(f"piece index {index} out of range (torrent has {num_pieces})")
    return index


def encode(msg: Message) -> bytes:
    """A whole frame, length prefix included."""
    if msg.kind == -1:
        return bytes(4)
    if msg.kind in _NO_PAYLOAD:
        body = b""
    elif msg.kind in _ONE_INDEX:
        body = struct.pack(">I", msg.index)
    elif msg.kind in _BLOCK_REF:
        body = struct.pack(">III", msg.index, msg.begin, msg.length)
    elif msg.kind == PIECE:
        body = struct.pack(">II", msg.index, msg.begin) + msg.data
    elif msg.kind == PORT:
        body = struct.pack(">H", msg.port)
    elif msg.kind == EXTENDED:
        body = bytes([msg.ext_id]) + msg.data
    else:
        body = msg.data
    return struct.pack(">IB", 1 + len(body), msg.kind) + body


def request(index: int, begin: int, length: int) -> Message:
    return Message(REQUEST, index=index, begin=begin, length=length)


class FrameDecoder:
    """Incremental decoder: feed bytes as they arrive, get whole messages. Buffers at most one frame."""

    def __init__(self, num_pieces: int) -> None:
        self.num_pieces = num_pieces
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Message]:
        self._buf += data
        out: list[Message] = []
        while len(self._buf) >= 4:
            length = int.from_bytes(self._buf[:4], "big")
            check_length(length, self.num_pieces)  # before waiting for (and buffering) the body
            if len(self._buf) < 4 + length:
                break
            body = bytes(self._buf[4:4 + length])
            del self._buf[:4 + length]
            out.append(decode_body(body, self.num_pieces))
        return out

    @property
    def pending(self) -> int:
        return len(self._buf)


def bitfield_pieces(bits: bytes, num_pieces: int) -> set[int]:
    """Piece indexes set in a bitfield; spare bits past the last piece are ignored."""
    return {i for i in range(num_pieces) if bits[i >> 3] & (0x80 >> (i & 7))}


def empty_bitfield(num_pieces: int) -> Message:
    return Message(BITFIELD, data=bytes(bitfield_len(num_pieces)))


@dataclass(frozen=True)
class ExtHandshake:
    """What a BEP 10 extension handshake tells us about the peer."""

    client: str | None = None       # `v`
    yourip: str | None = None       # our address as the peer sees it
    listen_port: int | None = None  # `p`
    reqq: int | None = None         # how many requests it queues
    extensions: tuple[str, ...] = ()


def encode_ext_handshake(client: str, extensions: dict[str, int] | None = None) -> Message:
    payload: dict[bytes, Any] = {b"m": {k.encode(): v for k, v in (extensions or {}).items()},
                                 b"v": client.encode()}
    return Message(EXTENDED, ext_id=0, data=bencode.encode(payload))


def parse_ext_handshake(payload: bytes) -> ExtHandshake:
    try:
        value = bencode.decode(payload)
    except bencode.BencodeError as e:
        raise WireError(f"extension handshake is not bencode: {e}") from None
    if not isinstance(value, dict):
        raise WireError("extension handshake is not a dictionary")
    m = value.get(b"m")
    names = tuple(sorted(k.decode("utf-8", "replace")[:64] for k in m))[:64] if isinstance(m, dict) else ()
    return ExtHandshake(client=_text(value.get(b"v")), yourip=_ip(value.get(b"yourip")),
                        listen_port=_int(value.get(b"p"), 1, 65535), reqq=_int(value.get(b"reqq"), 1, 1 << 20),
                        extensions=names)


def _text(v: object) -> str | None:
    if not isinstance(v, bytes):
        return None
    text = v[:MAX_EXT_NAME].decode("utf-8", "replace")
    return "".join(c if c.isprintable() else "?" for c in text)


def _ip(v: object) -> str | None:
    if isinstance(v, bytes) and len(v) in (4, 16):
        return str(ipaddress.ip_address(v))
    return None


def _int(v: object, lo: int, hi: int) -> int | None:
    return v if isinstance(v, int) and lo <= v <= hi else None
