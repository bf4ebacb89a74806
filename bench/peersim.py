"""Simulated BitTorrent peers for benchmarks: test equipment, not product code.

Thousands of peers in one asyncio process, each on its own 127.x.y.z address (Linux routes all of
127/8 to lo), each serving one or more torrents of deterministic content: plain BEP 3 handshake with the
BEP 10 extension bit, an extension handshake offering ut_metadata (BEP 9, so magnets get their
metadata), a full bitfield, unchoke, and real blocks for every request, so pieces pass the hash check.
A peer announces to the tracker when it starts and dials the peers the tracker lists (libtorrent may open
with an encrypted handshake, which this simulator does not speak; the dial gives it a plain one).
"""

from __future__ import annotations

import asyncio
import hashlib
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import aiohttp

from tracker_watch.domain import bencode
from tracker_watch.domain import tracker_proto as tp

PROTOCOL = b"\x13BitTorrent protocol"
RESERVED = bytes([0, 0, 0, 0, 0, 0x10, 0, 0])  # BEP 10: extension protocol
UT_METADATA = 3  # our id for ut_metadata in the extension handshake
REANNOUNCE_MAX_S = 30.0  # longest pause between two announces, whatever interval the tracker asks for
META_BLOCK = 16384


@dataclass
class SimTorrent:
    """Content made from a seed: piece i is SHA-256 counter-mode bytes, so any peer can serve it."""

    index: int
    piece_length: int = 32768
    pieces: int = 8
    info: bytes = b""
    info_hash: bytes = b""

    def __post_init__(self) -> None:
        hashes = b"".join(hashlib.sha1(self.piece(i)).digest() for i in range(self.pieces))
        self.info = bencode.encode({b"length": self.piece_length * self.pieces, b"name": f"sim-{self.index}".encode(),
                                    b"piece length": self.piece_length, b"pieces": hashes})
        self.info_hash = hashlib.sha1(self.info).digest()

    def piece(self, i: int) -> bytes:
        seed = self.index.to_bytes(8, "big") + i.to_bytes(8, "big")
        return b"".join(hashlib.sha256(seed + n.to_bytes(4, "big")).digest() for n in range(self.piece_length // 32))

    def magnet(self, tracker: str) -> str:
        return f"magnet:?xt=urn:btih:{self.info_hash.hex()}&tr={tracker}"


@dataclass
class SimPeer:
    ip: str
    torrents: dict[bytes, SimTorrent]
    tracker_url: str
    peer_id: bytes = b""
    port: int = 0
    started_at: float = 0.0  # time.time() when it began to serve
    blocks_sent: int = 0
    connections: int = 0
    _server: asyncio.Server | None = None
    _http: aiohttp.ClientSession | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _cache: dict[tuple[bytes, int], bytes] = field(default_factory=dict)

    async def start(self, http: aiohttp.ClientSession) -> None:
        self.peer_id = b"-SIM001-" + hashlib.sha1(self.ip.encode()).digest()[:12]
        self._server = await asyncio.start_server(self._serve, self.ip, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        self.started_at = time.time()
        # announce from our own address, as a real peer would: the tracker lists the address it saw
        own = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(self.ip, 0), force_close=True))
        self._http = own
        for torrent in self.torrents.values():
            self._spawn(self._announce(own, torrent))

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            self._server.close()
        if self._http is not None:
            await self._http.close()

    def _spawn(self, coro: object) -> None:
        task = asyncio.ensure_future(coro)  # type: ignore[call-overload]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _announce(self, http: aiohttp.ClientSession, torrent: SimTorrent) -> None:
        dialled: set[tuple[str, int]] = set()
        while True:
            req = tp.AnnounceRequest(info_hash=torrent.info_hash, peer_id=self.peer_id, port=self.port, left=0,
                                     numwant=50, key=1, event="started")
            every = REANNOUNCE_MAX_S
            try:
                async with http.get(tp.http_announce_url(self.tracker_url, req)) as resp:
                    reply = tp.parse_http_reply(await resp.read())
                # as clients do, at the tracker's interval (capped, so that a monitor listed after our first
                # announce is dialled soon): the only way a plaintext-only, TCP-only peer hands a magnet's
                # metadata to libtorrent, whose encrypted first dial it cannot answer (retried much later)
                every = min(max(reply.interval, 1), REANNOUNCE_MAX_S)
                for peer in reply.peers:
                    if peer not in dialled and not peer[0].startswith("127.1."):  # other simulated peers: skip
                        dialled.add(peer)
                        self._spawn(self._dial(peer, torrent.info_hash, dialled))
            except (aiohttp.ClientError, tp.TrackerError):
                pass
            await asyncio.sleep(every)

    async def _dial(self, peer: tuple[str, int], info_hash: bytes, dialled: set[tuple[str, int]]) -> None:
        try:
            reader, writer = await asyncio.open_connection(peer[0], peer[1], local_addr=(self.ip, 0))
        except OSError:
            dialled.discard(peer)
            return
        writer.write(PROTOCOL + RESERVED + info_hash + self.peer_id)
        await self._talk(reader, writer, dialled_out=True)
        # as clients do, dial it again at a later announce: a monitor's libtorrent refuses a connection from an
        # address it is itself still dialling (uTP first, for seconds), and then only the next dial gets through
        dialled.discard(peer)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._talk(reader, writer, dialled_out=False)

    async def _talk(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, dialled_out: bool) -> None:
        self.connections += 1
        try:
            hs = await reader.readexactly(68)
            torrent = self.torrents.get(hs[28:48])
            if hs[:20] != PROTOCOL or torrent is None:
                return
            await send_opening(writer, torrent, self.peer_id, dialled_out)
            their_ut: list[int] = [0]
            while True:
                (length,) = struct.unpack(">I", await reader.readexactly(4))
                if length:
                    await self._message(await reader.readexactly(length), torrent, writer, their_ut)
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    async def _message(self, msg: bytes, torrent: SimTorrent, writer: asyncio.StreamWriter,
                       their_ut: list[int]) -> None:
        if msg[0] == 6 and len(msg) == 13:  # request → piece
            index, begin, size = struct.unpack(">III", msg[1:13])
            data = self._piece(torrent, index)[begin:begin + size]
            writer.write(struct.pack(">IBII", 9 + len(data), 7, index, begin) + data)
            self.blocks_sent += 1
            await writer.drain()
        elif msg[0] == 20 and msg[1] == 0:  # their extension handshake: learn their ut_metadata id
            m = bencode.decode(msg[2:])
            if isinstance(m, dict) and isinstance(ids := m.get(b"m"), dict):
                their_ut[0] = int(ids.get(b"ut_metadata", 0))
        elif msg[0] == 20 and msg[1] == UT_METADATA and their_ut[0]:
            req = bencode.decode(_first_value(msg[2:]))
            if isinstance(req, dict) and req.get(b"msg_type") == 0:
                n = int(req.get(b"piece", 0))
                chunk = torrent.info[n * META_BLOCK:(n + 1) * META_BLOCK]
                head = bencode.encode({b"msg_type": 1, b"piece": n, b"total_size": len(torrent.info)})
                writer.write(struct.pack(">IBB", 2 + len(head) + len(chunk), 20, their_ut[0]) + head + chunk)
                await writer.drain()

    def _piece(self, torrent: SimTorrent, index: int) -> bytes:
        key = (torrent.info_hash, index)
        if key not in self._cache:
            self._cache[key] = torrent.piece(index)
        return self._cache[key]


def _first_value(data: bytes) -> bytes:
    """A ut_metadata request is one bencoded dict; anything after it (none for requests) is ignored."""
    depth, i = 0, 0
    while i < len(data):
        c = data[i:i + 1]
        if c in (b"d", b"l"):
            depth += 1
            i += 1
        elif c == b"e":
            depth -= 1
            i += 1
            if depth == 0:
                return data[:i]
        elif c == b"i":
            i = data.index(b"e", i) + 1
        else:
            colon = data.index(b":", i)
            i = colon + 1 + int(data[i:colon])
    return data


async def send_opening(writer: asyncio.StreamWriter, torrent: SimTorrent, peer_id: bytes, dialled_out: bool) -> None:
    """Our side of a seed's opening: handshake (unless we dialled, when it went first), extension handshake
    offering the metadata, a full bitfield and an unchoke."""
    if not dialled_out:
        writer.write(PROTOCOL + RESERVED + torrent.info_hash + peer_id)
    ext = bencode.encode({b"m": {b"ut_metadata": UT_METADATA}, b"metadata_size": len(torrent.info),
                          b"v": b"peersim"})
    writer.write(struct.pack(">IBB", 2 + len(ext), 20, 0) + ext)
    bits = _bitfield(torrent.pieces)
    writer.write(struct.pack(">IB", 1 + len(bits), 5) + bits + struct.pack(">IB", 1, 1))  # + unchoke
    await writer.drain()


def _bitfield(pieces: int) -> bytes:
    bits = bytearray(b"\xff" * ((pieces + 7) // 8))
    if pieces % 8:
        bits[-1] = (0xFF << (8 - pieces % 8)) & 0xFF
    return bytes(bits)


def addresses(count: int) -> Iterator[str]:
    """127.1.0.1, 127.1.0.2, … : distinct loopback addresses, away from the monitor's and the tracker's."""
    for n in range(count):
        yield f"127.1.{n // 250}.{n % 250 + 1}"
