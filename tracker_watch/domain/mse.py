"""Message Stream Encryption (MSE/PE, the "BitTorrent protocol encryption"), sans I/O.

Both sides of the handshake as state machines: feed them the bytes that arrived, send what
`take_output()` returns, and once `done` use `encrypt`/`decrypt` (None when plaintext was selected) on the
payload stream; `payload` holds what arrived after the handshake (already decrypted). Only maths and
parsing here; the sockets live in swarm/wire/. Spec: 768-bit Diffie-Hellman (G=2), SHA-1 derivations,
RC4 with the first 1024 keystream bytes discarded.
"""

from __future__ import annotations

import hashlib
import secrets
import struct
from collections.abc import Iterable

from cryptography.hazmat.decrepit.ciphers.algorithms import ARC4
from cryptography.hazmat.primitives.ciphers import Cipher

P = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DD"
    "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A63A36210000000000090563", 16)
G = 2
KEY_LEN = 96
MAX_PAD = 512
VC = bytes(8)
CRYPTO_PLAINTEXT = 0x01
CRYPTO_RC4 = 0x02
DISCARD = 1024


class MSEError(ValueError):
    """The other side broke the encryption handshake (or offered nothing we accept)."""


class RC4:
    """An RC4 stream with the first 1024 keystream bytes thrown away, as MSE prescribes."""

    def __init__(self, key: bytes) -> None:
        self._ctx = Cipher(ARC4(key), mode=None).encryptor()
        self._ctx.update(bytes(DISCARD))

    def update(self, data: bytes) -> bytes:
        return self._ctx.update(data) if data else b""


def private_key() -> int:
    return secrets.randbits(160) | 1 << 159  # 160 bits, as the spec recommends


def public_key(x: int) -> bytes:
    return pow(G, x, P).to_bytes(KEY_LEN, "big")


def shared_secret(x: int, their_public: bytes) -> bytes:
    y = int.from_bytes(their_public, "big")
    if not 1 < y < P - 1:  # 0, 1 and P-1 would force a known secret
        raise MSEError("degenerate Diffie-Hellman public key")
    return pow(y, x, P).to_bytes(KEY_LEN, "big")


def sha1(*parts: bytes) -> bytes:
    return hashlib.sha1(b"".join(parts)).digest()


def xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def req1(s: bytes) -> bytes:
    return sha1(b"req1", s)


def req23(s: bytes, skey: bytes) -> bytes:
    return xor(sha1(b"req2", skey), sha1(b"req3", s))


class SkeyIndex:
    """The infohashes an incoming handshake may name, by HASH('req2', infohash): the responder finds the one
    asked for with one hash and one lookup. Trying each instead costs two SHA-1s per infohash served, ~27 ms
    per encrypted connection at 10,000 swarms, all of it on the event loop. Kept up to date by its owner."""

    def __init__(self, skeys: Iterable[bytes] = ()) -> None:
        self._by_req2 = {sha1(b"req2", k): k for k in skeys}

    def add(self, skey: bytes) -> None:
        self._by_req2[sha1(b"req2", skey)] = skey

    def discard(self, skey: bytes) -> None:
        self._by_req2.pop(sha1(b"req2", skey), None)

    def find(self, s: bytes, got: bytes) -> bytes:
        """The infohash whose req2 hash xor HASH('req3', S) is `got`, or b"" if we serve none such."""
        return self._by_req2.get(xor(got, sha1(b"req3", s)), b"")

    def __len__(self) -> int:
        return len(self._by_req2)


def stream_keys(s: bytes, skey: bytes) -> tuple[bytes, bytes]:
    """(keyA, keyB): the initiator (A) encrypts with keyA, the responder with keyB."""
    return sha1(b"keyA", s, skey), sha1(b"keyB", s, skey)


def random_pad(max_len: int = MAX_PAD) -> bytes:
    return secrets.token_bytes(secrets.randbelow(max_len + 1))


class _Side:
    def __init__(self, private: int | None) -> None:
        self._x = private if private is not None else private_key()
        self._out = bytearray()
        self._buf = bytearray()
        self.done = False
        self.selected = 0
        self.encrypt: RC4 | None = None
        self.decrypt: RC4 | None = None
        self.payload = b""

    def take_output(self) -> bytes:
        out, self._out = bytes(self._out), bytearray()
        return out

    def _take(self, n: int) -> bytes | None:
        if len(self._buf) < n:
            return None
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    def _finish(self, enc: RC4, dec: RC4) -> None:
        self.done = True
        if self.selected == CRYPTO_RC4:
            self.encrypt, self.decrypt = enc, dec
            self.payload = dec.update(bytes(self._buf))
        else:
            self.payload = bytes(self._buf)
        self._buf.clear()


class Initiator(_Side):
    """We dialled: send Ya+PadA, then (on Yb) the crypto offer carrying `ia` (our BT handshake) inside."""

    def __init__(self, skey: bytes, provide: int, ia: bytes = b"", *, private: int | None = None,
                 pad_a: bytes | None = None, pad_c: bytes = b"") -> None:
        super().__init__(private)
        if not provide & (CRYPTO_RC4 | CRYPTO_PLAINTEXT):
            raise ValueError("provide must offer RC4 or plaintext")
        self.skey, self.provide, self.ia, self.pad_c = skey, provide, ia, pad_c
        self._out += public_key(self._x) + (random_pad() if pad_a is None else pad_a)
        self._state = "yb"
        self._marker = b""
        self._enc: RC4 | None = None
        self._dec: RC4 | None = None
        self._pad_d = 0

    def feed(self, data: bytes) -> None:
        if self.done:
            raise ValueError("handshake already complete; decrypt the payload stream instead")
        self._buf += data
        while not self.done and self._step():
            pass

    def _step(self) -> bool:
        if self._state == "yb":
            yb = self._take(KEY_LEN)
            if yb is None:
                return False
            s = shared_secret(self._x, yb)
            key_a, key_b = stream_keys(s, self.skey)
            self._enc, self._dec = RC4(key_a), RC4(key_b)
            self._out += req1(s) + req23(s, self.skey) + self._enc.update(
                VC + struct.pack(">IH", self.provide, len(self.pad_c)) + self.pad_c
                + struct.pack(">H", len(self.ia)) + self.ia)
            self._marker = self._dec.update(VC)  # VC is zeros, so this is keyB's first 8 keystream bytes
            self._state = "vc"
            return True
        assert self._enc is not None
        assert self._dec is not None
        if self._state == "vc":
            at = self._buf.find(self._marker)
            if at < 0:
                if len(self._buf) >= MAX_PAD + len(self._marker):
                    raise MSEError("no verification constant within the padding limit")
                return False
            del self._buf[:at + len(self._marker)]
            self._state = "select"
            return True
        if self._state == "select":
            head = self._take(6)
            if head is None:
                return False
            self.selected, self._pad_d = struct.unpack(">IH", self._dec.update(head))
            if self.selected not in (CRYPTO_RC4, CRYPTO_PLAINTEXT) or not self.selected & self.provide:
                raise MSEError(f"peer selected crypto {self.selected:#x}, we offered {self.provide:#x}")
            if self._pad_d > MAX_PAD:
                raise MSEError(f"padding of {self._pad_d} bytes exceeds {MAX_PAD}")
            self._state = "padd"
            return True
        pad = self._take(self._pad_d)
        if pad is None:
            return False
        self._dec.update(pad)
        self._finish(self._enc, self._dec)
        return False


class Responder(_Side):
    """They dialled (an incoming connection): find which of our infohashes they want, pick the crypto.
    `ia` is their initial payload (normally their BT handshake), in clear."""

    def __init__(self, skeys: Iterable[bytes] | SkeyIndex, allow: int, *, private: int | None = None,
                 pad_b: bytes | None = None) -> None:
        super().__init__(private)
        self._skeys = skeys if isinstance(skeys, SkeyIndex) else SkeyIndex(skeys)
        self.allow = allow
        self._pad_b = random_pad() if pad_b is None else pad_b
        self._state = "ya"
        self._s = b""
        self.skey = b""
        self.ia = b""
        self._enc: RC4 | None = None
        self._dec: RC4 | None = None
        self._need = 0

    def feed(self, data: bytes) -> None:
        if self.done:
            raise ValueError("handshake already complete; decrypt the payload stream instead")
        self._buf += data
        while not self.done and self._step():
            pass

    def _step(self) -> bool:
        if self._state == "ya":
            ya = self._take(KEY_LEN)
            if ya is None:
                return False
            self._s = shared_secret(self._x, ya)
            self._out += public_key(self._x) + self._pad_b
            self._state = "req1"
            return True
        if self._state == "req1":
            at = self._buf.find(req1(self._s))
            if at < 0:
                if len(self._buf) >= MAX_PAD + 20:
                    raise MSEError("no req1 hash within the padding limit")
                return False
            del self._buf[:at + 20]
            self._state = "req23"
            return True
        if self._state == "req23":
            got = self._take(20)
            if got is None:
                return False
            self.skey = self._skeys.find(self._s, got)
            if not self.skey:
                raise MSEError("peer asked for an infohash we do not serve")
            key_a, key_b = stream_keys(self._s, self.skey)
            self._dec, self._enc = RC4(key_a), RC4(key_b)
            self._state = "offer"
            return True
        assert self._enc is not None
        assert self._dec is not None
        return self._offer_steps(self._enc, self._dec)

    def _offer_steps(self, enc: RC4, dec: RC4) -> bool:
        if self._state == "offer":
            head = self._take(14)
            if head is None:
                return False
            vc, provide, self._need = struct.unpack(">8sIH", dec.update(head))
            if vc != VC:
                raise MSEError("wrong verification constant")
            if self._need > MAX_PAD:
                raise MSEError(f"padding of {self._need} bytes exceeds {MAX_PAD}")
            both = provide & self.allow
            self.selected = CRYPTO_RC4 if both & CRYPTO_RC4 else CRYPTO_PLAINTEXT if both & CRYPTO_PLAINTEXT else 0
            if not self.selected:
                raise MSEError(f"peer offered crypto {provide:#x}, we allow {self.allow:#x}")
            self._state = "padc"
            return True
        if self._state == "padc":
            got = self._take(self._need + 2)
            if got is None:
                return False
            (self._need,) = struct.unpack(">H", dec.update(got)[-2:])
            self._state = "ia"
            return True
        got = self._take(self._need)
        if got is None:
            return False
        self.ia = dec.update(got)
        self._out += enc.update(VC + struct.pack(">IH", self.selected, 0))
        self._finish(enc, dec)
        return False
