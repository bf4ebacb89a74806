"""A lying peer for local swarms: it handshakes, claims every piece, unchokes, and answers every request
with random bytes. A monitor must never call it `verified` — only `corrupt`.

Speaks just enough of the BitTorrent wire protocol (BEP 3) over TCP; no extensions, no uTP, no
encryption. Since libtorrent may open with an encrypted handshake, the liar also dials every peer the
tracker lists (a plain handshake, which libtorrent accepts), as an eager real client would.
"""

from __future__ import annotations

import asyncio
import os
import struct
from collections.abc import Sequence

import aiohttp

from tracker_watch.domain import tracker_proto as tp

LIAR_IP = "127.0.0.77"
PROTOCOL = b"\x13BitTorrent protocol"


class Liar:
    def __init__(self, num_pieces: int, info_hashes: Sequence[bytes], tracker_url: str, ip: str = LIAR_IP,
                 announce_interval: float = 3.0) -> None:
        self.num_pieces = num_pieces
        self.info_hashes = [h[:20] for h in info_hashes]
        self.tracker_url = tracker_url
        self.ip = ip
        self.port = 0
        self.peer_id = b"-LI0001-" + os.urandom(6).hex().encode()
        self.announce_interval = announce_interval
        self.blocks_sent = 0
        self._dialled: set[tuple[str, int]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> Liar:
        self._server = await asyncio.start_server(self._serve, self.ip, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        self._tasks.append(asyncio.create_task(self._announce_loop(), name="liar-announce"))
        return self

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for writer in list(self._writers):
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _announce_loop(self) -> None:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(self.ip, 0))) as http:
            while True:
                for ih in self.info_hashes:
                    req = tp.AnnounceRequest(info_hash=ih, peer_id=self.peer_id, port=self.port, left=0, numwant=50,
                                             key=2, event="started")
                    try:
                        async with http.get(tp.http_announce_url(self.tracker_url, req)) as resp:
                            reply = tp.parse_http_reply(await resp.read())
                    except (aiohttp.ClientError, tp.TrackerError):
                        continue
                    for peer in reply.peers:
                        if peer not in self._dialled and peer[0] != self.ip:
                            self._dialled.add(peer)
                            self._tasks.append(asyncio.create_task(self._dial(peer, ih)))
                await asyncio.sleep(self.announce_interval)

    async def _dial(self, peer: tuple[str, int], info_hash: bytes) -> None:
        try:
            reader, writer = await asyncio.open_connection(peer[0], peer[1], local_addr=(self.ip, 0))
        except OSError:
            self._dialled.discard(peer)
            return
        writer.write(PROTOCOL + bytes(8) + info_hash + self.peer_id)
        await self._talk(reader, writer, expect_handshake=True)
        self._dialled.discard(peer)  # dial again after the next announce

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._talk(reader, writer, expect_handshake=False)

    async def _talk(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, expect_handshake: bool) -> None:
        self.connections += 1
        self._writers.add(writer)
        try:
            hs = await reader.readexactly(68)
            if hs[:20] != PROTOCOL or hs[28:48] not in self.info_hashes:
                return
            if not expect_handshake:
                writer.write(PROTOCOL + bytes(8) + hs[28:48] + self.peer_id)
            bits = bytearray(b"\xff" * ((self.num_pieces + 7) // 8))
            if self.num_pieces % 8:
                bits[-1] = (0xFF << (8 - self.num_pieces % 8)) & 0xFF
            writer.write(struct.pack(">IB", 1 + len(bits), 5) + bits)  # bitfield: everything
            writer.write(struct.pack(">IB", 1, 1))  # unchoke
            await writer.drain()
            while True:
                (length,) = struct.unpack(">I", await reader.readexactly(4))
                if length == 0:
                    continue  # keep-alive
                msg = await reader.readexactly(length)
                if msg[0] == 6 and length == 13:  # request: index, begin, length → garbage
                    index, begin, size = struct.unpack(">III", msg[1:13])
                    writer.write(struct.pack(">IBII", 9 + size, 7, index, begin) + os.urandom(size))
                    self.blocks_sent += 1
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
