"""A small BitTorrent tracker (HTTP and UDP on one port) for local swarms: the demo and the tests.

It lists every peer that announced an infohash, with the address the announce came from, exactly as
public trackers do — which is why a listed address proves nothing: anybody can announce any port.
"""

from __future__ import annotations

import asyncio
import struct
import time
import urllib.parse
from dataclasses import dataclass, field

from aiohttp import web

from tracker_watch.domain import bencode
from tracker_watch.domain import tracker_proto as tp


@dataclass
class _Swarm:
    peers: dict[tuple[str, int], float] = field(default_factory=dict)  # endpoint → last announce (monotonic)


class LocalTracker:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, interval: int = 5, peer_ttl: float = 120.0) -> None:
        self.host, self.port, self.interval, self.peer_ttl = host, port, interval, peer_ttl
        self.swarms: dict[bytes, _Swarm] = {}
        self.announces: list[tuple[bytes, str, int, str]] = []  # (info_hash, ip, port, event)
        self._runner: web.AppRunner | None = None
        self._udp: asyncio.DatagramTransport | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/announce"

    @property
    def udp_url(self) -> str:
        return f"udp://{self.host}:{self.port}/announce"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/announce", self._http_announce)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        loop = asyncio.get_running_loop()
        self._udp, _ = await loop.create_datagram_endpoint(lambda: _UdpTracker(self), local_addr=(self.host, self.port))

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def record(self, info_hash: bytes, ip: str, port: int, event: str) -> list[tuple[str, int]]:
        """Register an announce; return the other live peers of the swarm."""
        self.announces.append((info_hash, ip, port, event))
        swarm = self.swarms.setdefault(info_hash, _Swarm())
        now = time.monotonic()
        if event == "stopped":
            swarm.peers.pop((ip, port), None)
        else:
            swarm.peers[(ip, port)] = now
        return [p for p, seen in swarm.peers.items() if p != (ip, port) and now - seen < self.peer_ttl]

    async def _http_announce(self, request: web.Request) -> web.Response:
        # info_hash and peer_id are raw bytes: decode the query ourselves, as latin-1 keeps every byte
        q = urllib.parse.parse_qs(request.rel_url.raw_query_string, encoding="latin-1")
        try:
            info_hash = q["info_hash"][0].encode("latin-1")
            port = int(q["port"][0])
        except (KeyError, ValueError):
            return web.Response(body=bencode.encode({b"failure reason": b"bad announce"}))
        if len(info_hash) != 20 or not 0 < port < 65536:
            return web.Response(body=bencode.encode({b"failure reason": b"bad info_hash or port"}))
        ip = request.remote or "127.0.0.1"
        peers = self.record(info_hash, ip, port, q.get("event", [""])[0])
        v4 = b"".join(_pack(p) for p in peers if ":" not in p[0])
        v6 = b"".join(_pack(p) for p in peers if ":" in p[0])
        body = {b"interval": self.interval, b"min interval": self.interval, b"peers": v4, b"complete": len(peers),
                b"incomplete": 0}
        if v6:
            body[b"peers6"] = v6
        return web.Response(body=bencode.encode(body), content_type="text/plain")


def _pack(peer: tuple[str, int]) -> bytes:
    import ipaddress

    return ipaddress.ip_address(peer[0]).packed + struct.pack(">H", peer[1])


class _UdpTracker(asyncio.DatagramProtocol):
    def __init__(self, tracker: LocalTracker) -> None:
        self.tracker = tracker
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        if len(data) == 16 and struct.unpack(">QI", data[:12]) == (tp.UDP_MAGIC, tp.ACTION_CONNECT):
            self.transport.sendto(struct.pack(">IIQ", tp.ACTION_CONNECT, struct.unpack(">I", data[12:16])[0],
                                              0x1234_5678_9ABC_DEF0), addr)
        elif len(data) >= 98 and struct.unpack(">I", data[8:12])[0] == tp.ACTION_ANNOUNCE:
            tid = struct.unpack(">I", data[12:16])[0]
            info_hash = data[16:36]
            event = {v: k for k, v in tp.EVENTS.items()}.get(struct.unpack(">I", data[80:84])[0], "")
            port = struct.unpack(">H", data[96:98])[0]
            peers = self.tracker.record(info_hash, addr[0], port, event)
            same_family = [p for p in peers if (":" in p[0]) == (":" in addr[0])]
            body = b"".join(_pack(p) for p in same_family)
            self.transport.sendto(struct.pack(">IIIII", tp.ACTION_ANNOUNCE, tid, self.tracker.interval, 0,
                                              len(same_family)) + body, addr)
