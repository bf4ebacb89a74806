"""Our own tracker client (HTTP and UDP): every peer a tracker lists is recorded with the tracker's URL.

libtorrent's built-in announces only report a peer count, so we announce ourselves and hand the peers
to the engine, which records them as `listed` and dials them. One task per (swarm, tracker, infohash):
a hybrid torrent is announced under its v1 hash and its truncated v2 hash, as clients do.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import random
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from tracker_watch import SOFTWARE, log
from tracker_watch.config import TrackerSettings
from tracker_watch.domain import tracker_proto as tp
from tracker_watch.domain.evidence import Source, normalize_ip
from tracker_watch.domain.peers import Endpoint

_log = log.get("tracker_watch.swarm")
MAX_REPLY_BYTES = 2 * 2**20
UNKNOWN_LEFT = 2**34  # a leecher that wants everything: some trackers only list seeds to leechers


@dataclass(frozen=True)
class AnnounceTarget:
    key: str
    info_hashes: tuple[bytes, ...]  # 20-byte hashes to announce under
    trackers: tuple[str, ...]


class Announcer:
    def __init__(self, settings: TrackerSettings, add_peer: Callable[[str, Endpoint, Source, str], None],
                 listen_port: Callable[[], int], peer_id: bytes, local_ip: str | None = None) -> None:
        self.settings = settings
        self._add_peer = add_peer
        self._listen_port = listen_port
        self._peer_id = peer_id
        self._local_ip = local_ip
        self._key = random.getrandbits(32)
        self._tasks: dict[str, list[asyncio.Task[None]]] = {}
        self._http: aiohttp.ClientSession | None = None
        self.announces = 0
        self.failures = 0

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(local_addr=(self._local_ip, 0) if self._local_ip else None, limit=100)
        self._http = aiohttp.ClientSession(
            connector=connector, headers={"User-Agent": SOFTWARE},
            timeout=aiohttp.ClientTimeout(total=self.settings.timeout_s))

    async def stop(self) -> None:
        for key in list(self._tasks):
            self.untrack(key)
        if self._http is not None:
            await self._http.close()
            self._http = None

    def track(self, target: AnnounceTarget) -> None:
        self.untrack(target.key)
        if not self.settings.enabled:
            return
        urls = tuple(dict.fromkeys(target.trackers + tuple(self.settings.extra)))
        self._tasks[target.key] = [
            asyncio.create_task(self._loop(target.key, url, ih), name=f"announce-{target.key[:8]}")
            for url in urls for ih in target.info_hashes]

    def untrack(self, key: str) -> None:
        for task in self._tasks.pop(key, []):
            task.cancel()

    async def _loop(self, key: str, url: str, info_hash: bytes) -> None:
        event, failures = "started", 0
        s = self.settings
        while True:
            req = tp.AnnounceRequest(info_hash=info_hash, peer_id=self._peer_id, port=self._listen_port(),
                                     left=UNKNOWN_LEFT, numwant=s.numwant, key=self._key, event=event)
            try:
                async with asyncio.timeout(s.timeout_s * 2):  # not wait_for: see evidence/batcher.py
                    reply = await self.announce(url, req)
            except (tp.TrackerError, OSError, TimeoutError, aiohttp.ClientError, ValueError) as exc:
                failures += 1
                self.failures += 1
                delay = min(s.max_interval_s, s.min_interval_s * 2 ** min(failures - 1, 10))
                _log.info("announce_failed", infohash=key, tracker=url, error=str(exc)[:200] or type(exc).__name__,
                          retry_in_s=delay)
            else:
                failures, event = 0, ""
                self.announces += 1
                for peer in reply.peers:
                    self._add_peer(key, (normalize_ip(peer[0]), peer[1]), Source.TRACKER, url)
                wanted = reply.min_interval or reply.interval
                delay = min(max(wanted, s.min_interval_s), s.max_interval_s)
                _log.debug("announced", infohash=key, tracker=url, peers=len(reply.peers), next_in_s=delay)
            await asyncio.sleep(delay * random.uniform(0.9, 1.0))

    async def announce(self, url: str, req: tp.AnnounceRequest) -> tp.AnnounceReply:
        scheme = urllib.parse.urlsplit(url).scheme
        if scheme in ("http", "https"):
            return await self._announce_http(url, req)
        if scheme == "udp":
            return await self._announce_udp(url, req)
        raise tp.TrackerError(f"unsupported tracker scheme {scheme!r}")

    async def _announce_http(self, url: str, req: tp.AnnounceRequest) -> tp.AnnounceReply:
        assert self._http is not None
        async with self._http.get(tp.http_announce_url(url, req), allow_redirects=True, max_redirects=2) as resp:
            body = await resp.content.read(MAX_REPLY_BYTES + 1)
            if len(body) > MAX_REPLY_BYTES:
                raise tp.TrackerError("reply larger than 2 MiB")
            if resp.status != 200:
                raise tp.TrackerError(f"HTTP {resp.status}")
        return tp.parse_http_reply(body)

    async def _announce_udp(self, url: str, req: tp.AnnounceRequest) -> tp.AnnounceReply:
        parts = urllib.parse.urlsplit(url)
        if parts.hostname is None or parts.port is None:
            raise tp.TrackerError("UDP tracker URL needs host and port")
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(parts.hostname, parts.port, type=2)  # SOCK_DGRAM
        if not infos:
            raise tp.TrackerError("tracker host does not resolve")
        family, _, _, _, sockaddr = infos[0]
        addr = (str(sockaddr[0]), int(sockaddr[1]))
        ipv6 = ipaddress.ip_address(addr[0]).version == 6
        local = (self._local_ip, 0) if self._local_ip and (":" in self._local_ip) == ipv6 else None
        transport, proto = await loop.create_datagram_endpoint(
            _Datagrams, remote_addr=addr, local_addr=local, family=family)
        try:
            tid = int.from_bytes(os.urandom(4), "big")
            transport.sendto(tp.udp_connect_request(tid))
            conn_id = tp.parse_udp_connect_reply(await proto.receive(self.settings.timeout_s), tid)
            tid = int.from_bytes(os.urandom(4), "big")
            transport.sendto(tp.udp_announce_request(conn_id, tid, req))
            return tp.parse_udp_announce_reply(await proto.receive(self.settings.timeout_s), tid, ipv6)
        finally:
            transport.close()


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        self.queue.put_nowait(data)

    def error_received(self, exc: Exception) -> None:
        self.queue.put_nowait(b"")

    async def receive(self, timeout: float) -> bytes:
        async with asyncio.timeout(timeout):
            data = await self.queue.get()
        if not data:
            raise tp.TrackerError("UDP tracker unreachable")
        return data
