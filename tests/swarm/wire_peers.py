"""Peers for the wire-client tests: libtorrent seeders with a chosen encryption policy, on 127.0.0.100-120."""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import libtorrent as lt

from tests.helpers import wait_for
from tracker_watch.demo.swarm import Content, make_content, peer_session, wait_listening, wait_torrent_ready
from tracker_watch.domain import peerwire as pw
from tracker_watch.swarm.wire import ProbeResult, Timeouts, probe

PROBE_IP = "127.0.0.100"   # the verifier's own address
PEER_ID = b"-TW0001-" + os.urandom(6).hex().encode()
FAST = Timeouts(connect=5, handshake=10, have=10, unchoke=20, piece=30, idle=15, total=60)

# libtorrent's encryption policies: forced = only MSE, disabled = only plaintext
ENCRYPTION: dict[str, dict[str, Any]] = {
    "forced": {"in_enc_policy": int(lt.enc_policy.forced), "out_enc_policy": int(lt.enc_policy.forced),
               "allowed_enc_level": int(lt.enc_level.rc4)},
    "disabled": {"in_enc_policy": int(lt.enc_policy.disabled), "out_enc_policy": int(lt.enc_policy.disabled)},
    "enabled": {},
}


@dataclass
class LtSeeder:
    ip: str
    port: int
    session: Any
    handle: Any
    content: Content

    def stop(self) -> None:
        self.session.remove_torrent(self.handle)
        self.session.pause()

    @property
    def ti(self) -> Any:
        return lt.torrent_info(self.content.torrent)

    def piece(self, index: int) -> tuple[int, bytes]:
        ti = self.ti
        return ti.piece_size(index), bytes(ti.hash_for_piece(index))

    async def probe(self, index: int = 0, *, info_hash: bytes | None = None, **kw: Any) -> ProbeResult:
        size, digest = self.piece(index)
        assert self.content.v1 is not None
        kw.setdefault("timeouts", FAST)
        # the previous test's connection from our address (and peer id) must be gone: libtorrent refuses a
        # second one, and under load it may not have reaped the first yet (seen: handshake_refused, 1 in 3)
        await wait_for(lambda: not any(str(p.ip[0]) == PROBE_IP for p in self.handle.get_peer_info()))
        return await probe(self.ip, self.port, info_hash or self.content.v1, PEER_ID, index, size, digest,
                           num_pieces=self.content.num_pieces, local_ip=PROBE_IP, **kw)


_content: dict[str, Content] = {}


async def content(version: str = "hybrid") -> Content:
    """One small torrent per version for the whole test run (3 pieces of 64 KiB and a short last one)."""
    if version not in _content:
        base = Path(tempfile.mkdtemp(prefix="tw-wire-"))
        _content[version] = await asyncio.to_thread(make_content, base, size=3 * 65536 + 5000,
                                                    piece_length=65536, version=version)
    return _content[version]


async def start_seeder(ip: str, encryption: str = "enabled", version: str = "hybrid",
                       only: set[int] | None = None, extra: dict[str, Any] | None = None) -> LtSeeder:
    """A libtorrent seeder; with `only`, a partial one that has just those pieces (checked from disk)."""
    c = await content(version)
    session = peer_session(ip, **{**ENCRYPTION[encryption], **(extra or {})})
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(c.torrent)
    params.save_path = str(c.data_dir)
    params.flags &= ~(lt.torrent_flags.auto_managed | lt.torrent_flags.paused)
    if only is None:
        params.flags |= lt.torrent_flags.seed_mode
    else:
        params.save_path = await asyncio.to_thread(_partial_copy, c, only)
        params.flags |= lt.torrent_flags.upload_mode  # never completes itself
    handle = session.add_torrent(params)
    port = await wait_listening(session)
    seeder = LtSeeder(ip=ip, port=port, session=session, handle=handle, content=c)
    await wait_torrent_ready(handle)
    if only is not None:
        await wait_for(lambda: {i for i in range(c.num_pieces) if handle.have_piece(i)} == only)
    return seeder


def _partial_copy(c: Content, only: set[int]) -> str:
    data = bytearray((c.data_dir / c.name).read_bytes())
    for piece in set(range(c.num_pieces)) - only:
        start = piece * c.piece_length
        data[start:start + c.piece_length] = bytes(len(data[start:start + c.piece_length]))
    own = Path(tempfile.mkdtemp(prefix="tw-wire-partial-"))
    (own / c.name).write_bytes(bytes(data))
    return str(own)


@dataclass
class FakePeer:
    """A scripted peer on its own address that serves real (or wrong) data, or misbehaves on purpose.

    It records every message we send after the handshake, so tests can check we never upload."""

    ip: str
    pieces: list[bytes]
    info_hash: bytes = b"\x11" * 20
    fast: bool = True
    have: str = "all"               # all | none | bitfield (all pieces) | missing (all but piece 0)
    unchoke: bool = True
    allowed_fast: bool = False
    reject_all: bool = False
    ask_us: bool = False            # send us requests (a leecher would)
    answer_hash: bytes | None = None
    after_handshake: bytes = b""    # raw bytes sent right after the handshake (garbage, huge lengths…)
    dribble: float | None = None    # after the handshake: one keep-alive byte per `dribble` seconds, forever
    port: int = 0
    peer_id: bytes = b"-FK0001-" + bytes(12)  # libtorrent keeps one connection per peer id: vary it per peer
    received: list[pw.Message] | None = None
    _server: asyncio.Server | None = None

    @property
    def num_pieces(self) -> int:
        return len(self.pieces)

    def spec(self, index: int = 0) -> tuple[int, bytes]:
        return len(self.pieces[index]), hashlib.sha1(self.pieces[index]).digest()

    async def start(self) -> FakePeer:
        self.received = []
        self._server = await asyncio.start_server(self._serve, self.ip, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    async def probe(self, index: int = 0, **kw: Any) -> ProbeResult:
        size, digest = self.spec(index)
        kw.setdefault("timeouts", FAST)
        kw.setdefault("encryption", "plaintext")
        return await probe(self.ip, self.port, self.info_hash, PEER_ID, index, size, digest,
                           num_pieces=self.num_pieces, local_ip=PROBE_IP, **kw)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._talk(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError, pw.WireError):
            pass
        finally:
            writer.close()

    async def _talk(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        pw.parse_handshake(await reader.readexactly(pw.HANDSHAKE_LEN))
        reserved = pw.reserved_bits(pw.EXTENSION_BIT, *([pw.FAST_BIT] if self.fast else []))
        writer.write(pw.encode_handshake(self.answer_hash or self.info_hash, self.peer_id, reserved))
        writer.write(self.after_handshake)
        while self.dribble is not None:
            writer.write(b"\x00")
            await writer.drain()
            await asyncio.sleep(self.dribble)
        for msg in self._opening():
            writer.write(pw.encode(msg))
        await writer.drain()
        decoder = pw.FrameDecoder(self.num_pieces)
        while data := await reader.read(65536):
            for msg in decoder.feed(data):
                assert self.received is not None
                self.received.append(msg)
                for answer in self._answer(msg):
                    writer.write(pw.encode(answer))
            await writer.drain()

    def _opening(self) -> list[pw.Message]:
        n = self.num_pieces
        have = {"all": [pw.Message(pw.HAVE_ALL)], "none": [pw.Message(pw.HAVE_NONE)],
                "bitfield": [pw.Message(pw.BITFIELD, data=_bits(set(range(n)), n))],
                "missing": [pw.Message(pw.BITFIELD, data=_bits(set(range(1, n)), n))]}[self.have]
        out = [pw.encode_ext_handshake("FakePeer/1.0"), *have]
        if self.allowed_fast:
            out.append(pw.Message(pw.ALLOWED_FAST, index=0))
        if self.ask_us:
            out.append(pw.request(0, 0, pw.BLOCK))
        return out

    def _answer(self, msg: pw.Message) -> list[pw.Message]:
        if msg.kind == pw.INTERESTED and self.unchoke:
            return [pw.Message(pw.UNCHOKE)]
        if msg.kind != pw.REQUEST:
            return []
        if self.reject_all:
            return [pw.Message(pw.REJECT, index=msg.index, begin=msg.begin, length=msg.length)]
        data = self.pieces[msg.index][msg.begin:msg.begin + msg.length]
        return [pw.Message(pw.PIECE, index=msg.index, begin=msg.begin, length=len(data), data=data)]


def _bits(have: set[int], n: int) -> bytes:
    out = bytearray(pw.bitfield_len(n))
    for i in have:
        out[i >> 3] |= 0x80 >> (i & 7)
    return bytes(out)
