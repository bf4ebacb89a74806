"""A TCP listener that stops accepting while it is full, instead of accepting and hanging up.

The verifier holds at most INCOMING_HELD × probe_concurrency connections from peers (each one a descriptor).
With asyncio's own server every connection beyond was accepted and closed at once: the peer counted as turned
away and was proven only after a tracker listed it again (a minute or more; at 5,000 busy swarms 7,225 of
10,000 peers). Here the connections beyond wait in the kernel's listen backlog, where they cost no descriptor,
and are accepted as held ones finish; past the backlog the kernel drops SYNs and the peer's TCP retries.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

from tracker_watch import log

_log = log.get("tracker_watch.verify")
BACKLOG = 4096  # connections the kernel queues for us while we are full (capped by net.core.somaxconn)
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class GatedListener:
    def __init__(self, handler: Handler, capacity: int) -> None:
        self._handler = handler
        self.capacity = capacity
        self.open = 0  # accepted connections whose handler has not finished
        self._room = asyncio.Event()
        self._socks: list[socket.socket] = []
        self._loops: list[asyncio.Task[None]] = []
        self._conns: set[asyncio.Task[None]] = set()

    async def listen(self, hosts: list[str], port: int) -> int:
        """Listen on every host at the same port (0: one the OS picks for the first); returns the port."""
        for host in hosts:
            sock = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET,
                                        backlog=BACKLOG)
            sock.setblocking(False)
            port = port or int(sock.getsockname()[1])
            self._socks.append(sock)
            self._loops.append(asyncio.create_task(self._accept(sock), name=f"listen-{host}"))
        return port

    async def close(self) -> None:
        """Stop listening; connections already accepted run on (as with asyncio.Server.close)."""
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        for sock in self._socks:
            sock.close()
        self._loops, self._socks = [], []

    async def _accept(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while self.open >= self.capacity:  # full: the next ones wait in the backlog
                self._room.clear()
                await self._room.wait()
            try:
                try:
                    conn, _ = sock.accept()  # a burst is accepted without a trip through the selector each
                except BlockingIOError:
                    conn, _ = await loop.sock_accept(sock)
            except OSError:  # EMFILE, ECONNABORTED…: the next accept may work; do not spin on it
                await asyncio.sleep(0.1)
                continue
            self.open += 1
            task = asyncio.create_task(self._serve(conn))
            self._conns.add(task)
            task.add_done_callback(self._conns.discard)

    async def _serve(self, conn: socket.socket) -> None:
        try:
            try:
                reader, writer = await asyncio.open_connection(sock=conn)
            except OSError:
                conn.close()
                return
            try:
                await self._handler(reader, writer)
            except Exception as exc:  # a bug in the handler must not stop the listener (asyncio's server logs too)
                _log.exception("incoming_handler_failed", error=str(exc)[:300])
                writer.close()
        finally:
            self.open -= 1
            self._room.set()
