"""UDP tracker announces (BEP 15) under the address policy: the tracker's host is resolved and every address
the policy forbids is dropped before a datagram leaves; replies that do not answer our transaction are skipped."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import urllib.parse
from collections.abc import Callable, Mapping

from tracker_watch.domain import tracker_proto as tp
from tracker_watch.domain.evidence import normalize_ip


async def udp_announce(url: str, req: tp.AnnounceRequest, allows: Callable[[str], bool],
                       local_ips: Mapping[int, str | None], timeout_s: float, numwant: int) -> tp.AnnounceReply:
    """One announce from our address of the tracker's family (`local_ips` by IP version, None: any).
    A tracker that never answers the connect request fails as a TrackerError, not a timeout: the announce
    itself was never sent, so it cannot have listed us."""
    parts = urllib.parse.urlsplit(url)
    if parts.hostname is None or parts.port is None:
        raise tp.TrackerError("UDP tracker URL needs host and port")
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(parts.hostname, parts.port, type=socket.SOCK_DGRAM)
    infos = [i for i in infos if allows(normalize_ip(str(i[4][0])))]
    if not infos:
        raise tp.TrackerError(f"tracker host {parts.hostname} has no address the address policy allows")
    family, _, _, _, sockaddr = infos[0]
    addr = (str(sockaddr[0]), int(sockaddr[1]))
    ipv6 = ipaddress.ip_address(addr[0]).version == 6
    ours = local_ips[6 if ipv6 else 4]
    local = (ours, 0) if ours else None
    transport, proto = await loop.create_datagram_endpoint(
        _Datagrams, remote_addr=addr, local_addr=local, family=family)
    try:
        tid = int.from_bytes(os.urandom(4), "big")
        transport.sendto(tp.udp_connect_request(tid))
        try:
            conn_id = tp.parse_udp_connect_reply(await proto.receive(timeout_s, tid), tid)
        except TimeoutError:  # not a timeout of the announce, which was never sent (see announcer._may_have_arrived)
            raise tp.TrackerError("UDP tracker did not answer the connect request") from None
        tid = int.from_bytes(os.urandom(4), "big")
        transport.sendto(tp.udp_announce_request(conn_id, tid, req))
        data = await proto.receive(timeout_s, tid)
        return tp.parse_udp_announce_reply(data, tid, ipv6, numwant)
    finally:
        transport.close()


class _Datagrams(asyncio.DatagramProtocol):
    """Datagrams from the tracker's address. Any that do not answer our transaction are skipped (BEP 15);
    a bounded queue, so a flood costs nothing but the datagrams dropped."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=64)
        self.ignored = 0

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        if not self.queue.full():
            self.queue.put_nowait(data)

    def error_received(self, exc: Exception) -> None:
        if not self.queue.full():
            self.queue.put_nowait(b"")

    async def receive(self, timeout: float, transaction_id: int) -> bytes:
        async with asyncio.timeout(timeout):
            while True:
                data = await self.queue.get()
                if not data:
                    raise tp.TrackerError("UDP tracker unreachable")
                if tp.udp_reply_matches(data, transaction_id):
                    return data
                self.ignored += 1
