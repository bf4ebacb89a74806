"""A one-shot BitTorrent handshake (BEP 3), optionally inside Message Stream Encryption, to ask a peer
which pieces it claims.

Used to tell when a real client seeds: it sends a full bitfield (or HAVE_ALL) only after it has checked
its data. Clients that require encryption refuse a plaintext handshake, hence the MSE (RC4) initiator.
The probe never requests a block and never sends a bitfield: it wants nothing and offers nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import struct

PSTR = b"\x13BitTorrent protocol"
_FAST = 0x04  # reserved[7]: BEP 6 fast extension, so a seed may answer HAVE_ALL
MSG_HAVE, MSG_BITFIELD, MSG_HAVE_ALL, MSG_HAVE_NONE = 4, 5, 14, 15

# MSE: the 768-bit prime and generator 2 of the spec; VC is eight zero bytes; RC4 is crypto method 2
_P = int("FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DDEF"
         "9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A63A36210000000000090563", 16)
_VC = bytes(8)
_CRYPTO_RC4 = 2


class ProbeError(Exception):
    """The peer did not complete a handshake for this infohash."""


class _RC4:
    def __init__(self, key: bytes) -> None:
        s = list(range(256))
        j = 0
        for i in range(256):
            j = (j + s[i] + key[i % len(key)]) & 0xFF
            s[i], s[j] = s[j], s[i]
        self.s, self.i, self.j = s, 0, 0
        self.crypt(bytes(1024))  # MSE discards the first 1024 bytes of each key stream

    def crypt(self, data: bytes) -> bytes:
        s, i, j = self.s, self.i, self.j
        out = bytearray(len(data))
        for n, byte in enumerate(data):
            i = (i + 1) & 0xFF
            j = (j + s[i]) & 0xFF
            s[i], s[j] = s[j], s[i]
            out[n] = byte ^ s[(s[i] + s[j]) & 0xFF]
        self.i, self.j = i, j
        return bytes(out)


class _Stream:
    """Reader/writer that (de)crypts with RC4 once MSE has set it up."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.enc: _RC4 | None = None
        self.dec: _RC4 | None = None

    async def read(self, n: int) -> bytes:
        data = await self.reader.readexactly(n)
        return self.dec.crypt(data) if self.dec else data

    def write(self, data: bytes) -> None:
        self.writer.write(self.enc.crypt(data) if self.enc else data)


def _sha1(*parts: bytes) -> bytes:
    return hashlib.sha1(b"".join(parts)).digest()


async def _mse_initiate(stream: _Stream, info_hash: bytes) -> None:
    private = int.from_bytes(os.urandom(20), "big")
    stream.write(pow(2, private, _P).to_bytes(96, "big") + os.urandom(os.urandom(1)[0] % 64))
    their_public = int.from_bytes(await stream.reader.readexactly(96), "big")
    secret = pow(their_public, private, _P).to_bytes(96, "big")
    stream.enc = _RC4(_sha1(b"keyA", secret, info_hash))
    dec = _RC4(_sha1(b"keyB", secret, info_hash))
    req2 = _sha1(b"req2", info_hash)
    req3 = _sha1(b"req3", secret)
    stream.writer.write(_sha1(b"req1", secret) + bytes(a ^ b for a, b in zip(req2, req3, strict=True)))
    stream.write(_VC + struct.pack(">IH", _CRYPTO_RC4, 0) + struct.pack(">H", 0))  # no PadC, no initial payload
    # the answer is PadB (0-512 random bytes) then RC4(VC): find the encrypted VC to synchronise
    marker = dec.crypt(_VC)
    window = b""
    while not window.endswith(marker):
        if len(window) > 512 + len(marker):
            raise ProbeError("no MSE verification constant from the peer")
        window += await stream.reader.readexactly(1)
    stream.dec = dec
    select, pad_len = struct.unpack(">IH", await stream.read(6))
    if select != _CRYPTO_RC4:
        raise ProbeError(f"peer selected crypto method {select}, not RC4")
    await stream.read(pad_len)


async def _read_message(stream: _Stream) -> tuple[int, bytes] | None:
    (length,) = struct.unpack(">I", await stream.read(4))
    if length == 0:
        return None  # keep-alive
    body = await stream.read(length)
    return body[0], body[1:]


async def claimed_pieces(ip: str, port: int, info_hash: bytes, num_pieces: int, *, encrypted: bool = False,
                         source_ip: str | None = None, timeout: float = 10.0) -> set[int]:
    """Handshake with ip:port for `info_hash` and return the pieces its first bitfield/HAVE messages claim."""
    async def run() -> set[int]:
        local = (source_ip, 0) if source_ip else None
        reader, writer = await asyncio.open_connection(ip, port, local_addr=local)
        try:
            return await _exchange(_Stream(reader, writer), info_hash, num_pieces, encrypted)
        finally:
            writer.close()
    try:
        return await asyncio.wait_for(run(), timeout)
    except (OSError, asyncio.IncompleteReadError, TimeoutError) as e:
        raise ProbeError(f"{ip}:{port}: {type(e).__name__}: {e}") from e


async def _exchange(stream: _Stream, info_hash: bytes, num_pieces: int, encrypted: bool) -> set[int]:
    if encrypted:
        await _mse_initiate(stream, info_hash)
    peer_id = b"-TW0001-" + os.urandom(6).hex().encode()
    stream.write(PSTR + bytes(7) + bytes([_FAST]) + info_hash + peer_id)
    answer = await stream.read(68)
    if answer[:20] != PSTR or answer[28:48] != info_hash:
        raise ProbeError("handshake for another protocol or infohash")
    pieces: set[int] = set()
    while True:
        msg = await _read_message(stream)
        if msg is None:
            continue
        kind, payload = msg
        if kind == MSG_BITFIELD:
            pieces |= {i for i in range(num_pieces) if payload[i // 8] & (0x80 >> (i % 8))}
            return pieces
        if kind == MSG_HAVE_ALL:
            return set(range(num_pieces))
        if kind == MSG_HAVE_NONE:
            return pieces
        if kind == MSG_HAVE:
            pieces.add(struct.unpack(">I", payload)[0])
            if len(pieces) == num_pieces:
                return pieces
        # anything else (extended handshake, PORT, unchoke, allowed-fast…) says nothing about pieces
