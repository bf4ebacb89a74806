"""The load generator's worker processes (bench/loadgen.py): simulated peers, or the sink that measures them.

* `--worker J --procs K`: peers J·N/K … (J+1)·N/K − 1, a contiguous block of 127.1.x.y addresses (peer j on
  its own address, serving torrents j … j+P−1). They listen at once (before the load), print `READY` with
  their ports, and on `go RATE ENDPOINTS` dial every monitor endpoint for each of their torrents, paced at
  RATE dials/s for this process, over plain BitTorrent (handshake, extension handshake with ut_metadata,
  full bitfield, unchoke, blocks on request: bench/peersim.py's conversation). A *contact* is a connection
  either way that carried a valid handshake for one of the peer's torrents.
* `--sink`: the generator's own baseline: a trivial monitor on `--sink-at ip:port` (SO_REUSEPORT, so several
  sink processes share one port) that answers each handshake with the same handshake, reads what follows
  and hangs up. Against it, the contacts/s reached are what the generator offers.

Each process raises its own RLIMIT_NOFILE (soft up to the hard limit; 20,000 on the benchmark machine).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import resource
import struct
import sys
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from bench.peersim import PROTOCOL, RESERVED, SimPeer, SimTorrent, addresses, send_opening

TICK_S = 0.02
RETRY_S = 5.0  # a refused dial is tried once more after this (a real peer would wait for its next announce)


class LoadTorrent(SimTorrent):
    """One SHA-256 per piece, repeated: 10,000 torrents are made in a second (SimTorrent's content takes minutes)."""

    def piece(self, i: int) -> bytes:
        seed = hashlib.sha256(self.index.to_bytes(8, "big") + i.to_bytes(8, "big")).digest()
        return seed * (self.piece_length // 32)


def load_torrents(n: int) -> list[LoadTorrent]:
    return [LoadTorrent(i, piece_length=16384, pieces=4) for i in range(n)]


def raise_fd_limit() -> int:
    """Thousands of sockets per process: lift the soft limit to the hard one (and the hard one where allowed)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for want in (262_144, hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(want, hard)))
            return want
        except (ValueError, OSError):
            continue
    return soft


def block(n: int, procs: int, j: int) -> range:
    """Worker j's contiguous share of the n peers (so its addresses are one range)."""
    return range(j * n // procs, (j + 1) * n // procs)


@dataclass
class CountingPeer(SimPeer):
    """A simulated peer that records every contact with the monitor and when each torrent was first reached."""

    contacts: list[float] = field(default_factory=list)
    last_activity: float = 0.0
    first_contact: dict[bytes, float] = field(default_factory=dict)

    async def listen(self) -> None:
        self.peer_id = b"-SIM001-" + hashlib.sha1(self.ip.encode()).digest()[:12]
        self._server = await asyncio.start_server(self._serve, self.ip, 0, backlog=64)
        self.port = self._server.sockets[0].getsockname()[1]

    async def dial(self, endpoint: tuple[str, int], info_hash: bytes, retry: bool, failed: list[int]) -> None:
        try:
            reader, writer = await asyncio.open_connection(endpoint[0], endpoint[1], local_addr=(self.ip, 0))
        except OSError:
            failed[0] += 1
            if retry:
                await asyncio.sleep(RETRY_S)
                await self.dial(endpoint, info_hash, False, failed)
            return
        writer.write(PROTOCOL + RESERVED + info_hash + self.peer_id)
        await self._talk(reader, writer, dialled_out=True)

    async def _talk(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, dialled_out: bool) -> None:
        try:
            hs = await reader.readexactly(68)
            torrent = self.torrents.get(hs[28:48])
            if hs[:20] != PROTOCOL or torrent is None:
                return
            now = time.time()
            self.contacts.append(now)
            self.last_activity = now
            self.first_contact.setdefault(torrent.info_hash, now)
            await send_opening(writer, torrent, self.peer_id, dialled_out)
            their_ut: list[int] = [0]
            while True:
                (length,) = struct.unpack(">I", await reader.readexactly(4))
                if length:
                    before = self.blocks_sent
                    await self._message(await reader.readexactly(length), torrent, writer, their_ut)
                    if self.blocks_sent != before:
                        self.last_activity = time.time()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError, OSError, asyncio.CancelledError):
            pass  # a cancel at the end of the run included: nothing left to report
        finally:
            writer.close()


async def _line() -> str:
    return await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


async def worker(n: int, peers_per_swarm: int, procs: int, j: int) -> None:
    raise_fd_limit()
    torrents = load_torrents(n)
    ips = list(addresses(n))
    peers = [CountingPeer(ips[i], {torrents[(i + k) % n].info_hash: torrents[(i + k) % n]
                                   for k in range(peers_per_swarm)}, "") for i in block(n, procs, j)]
    for p in peers:
        await p.listen()
    print("READY", json.dumps([p.port for p in peers]), flush=True)
    go = (await _line()).split(maxsplit=2)
    if len(go) < 3:  # the coordinator is gone, or stopped before the load
        return
    rate, endpoints = float(go[1]), [tuple(e) for e in json.loads(go[2])]
    jobs = [(p, h, (str(e[0]), int(e[1]))) for k in range(peers_per_swarm) for p in peers for e in endpoints
            for h in [list(p.torrents)[k]]]
    failed, tasks = [0], set()
    started, cpu0 = time.time(), time.process_time()
    stop = asyncio.ensure_future(_line())

    async def pace() -> None:
        # every TICK_S, issue every dial that is due: one wake-up per dial would cap the rate at the scheduler's
        # latency on a loaded machine, not at what the process can do
        t0, i = time.monotonic(), 0
        while i < len(jobs):
            due = min(len(jobs), int((time.monotonic() - t0) * rate) + 1)
            for p, h, e in jobs[i:due]:
                task = asyncio.ensure_future(p.dial(e, h, True, failed))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            i = due
            await asyncio.sleep(TICK_S)

    pacer = asyncio.ensure_future(pace())
    issued_until = 0.0
    while not stop.done():
        if pacer.done() and not issued_until:
            issued_until = time.time()
        print("P", json.dumps([sum(len(p.first_contact) for p in peers), sum(p.blocks_sent for p in peers),
                               max(p.last_activity for p in peers), pacer.done()]), flush=True)
        await asyncio.wait([stop], timeout=0.5)
    pacer.cancel()
    cpu = time.process_time()
    print("R", json.dumps({"firsts": [t for p in peers for t in p.first_contact.values()],
                           "contacts": sorted(t for p in peers for t in p.contacts), "dials": len(jobs),
                           "dials_failed": failed[0], "blocks": sum(p.blocks_sent for p in peers),
                           "started": started, "issued_until": issued_until or time.time(),
                           "last": max(p.last_activity for p in peers), "cpu_s": cpu,
                           "load_cpu_s": cpu - cpu0}), flush=True)
    for task in list(tasks):
        task.cancel()
    for p in peers:
        await p.stop()


class _Sink(asyncio.Protocol):
    """Echo the 68-byte handshake, wait for what the peer sends next, hang up."""

    count: ClassVar[list[int]] = [0]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport
        self.buf = b""
        self.answered = False

    def data_received(self, data: bytes) -> None:
        if self.answered:
            self.transport.close()
            return
        self.buf += data
        if len(self.buf) >= 68:
            self.transport.write(self.buf[:68])
            self.answered = True
            self.count[0] += 1
            if len(self.buf) > 68:
                self.transport.close()


async def sink(at: list[str]) -> None:
    raise_fd_limit()
    loop = asyncio.get_running_loop()
    servers = [await loop.create_server(_Sink, host, int(port), reuse_port=True, backlog=4096)
               for host, port in (a.rsplit(":", 1) for a in at)]
    print("READY", os.getpid(), flush=True)
    await _line()  # until stdin closes or says stop
    for server in servers:
        server.close()
    print("R", json.dumps({"answered": _Sink.count[0], "cpu_s": time.process_time()}), flush=True)
