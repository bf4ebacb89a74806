"""A hostile tracker on loopback: HTTP replies in small segments or chunks, redirects, junk UDP datagrams.

Each reply is written as the test scripts it, segment by segment with TCP_NODELAY and a pause between
writes, so the client really receives it in pieces as it would from a tracker across the Internet.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from tracker_watch.domain import bencode
from tracker_watch.domain import tracker_proto as tp

SEGMENT = 1448  # a TCP segment's payload on a 1500-byte MTU


def compact(peers: list[tuple[str, int]]) -> bytes:
    return b"".join(socket.inet_aton(ip) + struct.pack(">H", port) for ip, port in peers)


def reply_body(peers: list[tuple[str, int]], pad: int = 0, interval: int = 60) -> bytes:
    """A valid announce reply; `pad` bytes of an extra key make it as large as a test needs."""
    doc: dict[bytes, object] = {b"interval": interval, b"peers": compact(peers)}
    if pad:
        doc[b"x padding"] = b"p" * pad
    return bencode.encode(doc)


def segmented(body: bytes, size: int = SEGMENT) -> list[bytes]:
    head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
    data = head + body
    return [data[i:i + size] for i in range(0, len(data), size)]


def chunked(body: bytes, size: int = 1000) -> list[bytes]:
    out = [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"]
    for i in range(0, len(body), size):
        part = body[i:i + size]
        out.append(f"{len(part):x}\r\n".encode() + part + b"\r\n")
    out.append(b"0\r\n\r\n")
    return out


def redirect(location: str) -> list[bytes]:
    return [f"HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()]


@dataclass
class HostileTracker:
    """HTTP on `port`, UDP on the same port number; `script(path)` says what the HTTP side sends."""

    script: Callable[[str], list[bytes]] = lambda path: segmented(reply_body([]))
    udp_peers: list[tuple[str, int]] = field(default_factory=list)
    udp_junk: int = 3  # stray datagrams sent before each real answer
    host: str = "127.0.0.1"
    port: int = 0
    paths: list[str] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _udp: asyncio.DatagramTransport | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/announce"

    @property
    def udp_url(self) -> str:
        return f"udp://{self.host}:{self.port}/announce"

    async def start(self) -> HostileTracker:
        self._server = await asyncio.start_server(self._serve, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        loop = asyncio.get_running_loop()
        self._udp, _ = await loop.create_datagram_endpoint(lambda: _Udp(self), local_addr=(self.host, self.port))
        return self

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ", 2)[1].decode()
            self.paths.append(path)
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for part in self.script(path):
                writer.write(part)
                await writer.drain()
                await asyncio.sleep(0.002)  # let each write leave as its own segment
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, tracker: HostileTracker) -> None:
        self.tracker = tracker
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        action, tid = struct.unpack(">II", data[8:16])
        for n in range(self.tracker.udp_junk):  # wrong transaction, too short, a forged error
            junk = [struct.pack(">II", action, tid ^ 0xFFFF) + bytes(12), b"\x00\x01",
                    struct.pack(">II", tp.ACTION_ERROR, tid + 1) + b"go away"][n % 3]
            self.transport.sendto(junk, addr)
        if action == tp.ACTION_CONNECT:
            self.transport.sendto(struct.pack(">IIQ", tp.ACTION_CONNECT, tid, 0x1234), addr)
        else:
            header = struct.pack(">IIIII", tp.ACTION_ANNOUNCE, tid, 60, 0, len(self.tracker.udp_peers))
            self.transport.sendto(header + compact(self.tracker.udp_peers), addr)
