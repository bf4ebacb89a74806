"""Load generator for bench/capacity_load.py: a local tracker and simulated peers, in a process of their own.

`--swarms N --peers P`: N torrents of cheap deterministic content (4 pieces of 16 KiB), N simulated peers on
127.1.x.y, peer j serving torrents j … j+P-1 (mod N), so every swarm has P active peers while the process
needs only N listening sockets. It prints `TRACKER <url>`, waits until the monitor (the node or the bare
session) has announced from `--monitor-ip` in every swarm, prints `LOAD <unix time>`, starts every peer as
fast as it can and counts *contacts*: connections between the monitor and a simulated peer that carried a
valid BitTorrent handshake for one of its torrents, either direction. It stops once every (swarm, peer)
pair has been contacted, as many pieces (one block each) were served as there are pairs (the monitor's
proof of each peer, or the bare session's P pieces per swarm), and nothing new happened for QUIET_S (or
at `--timeout`), then prints
`RESULT {json}`. The peers run in worker processes of PEERS_PER_SHARD each (this one keeps the tracker),
since one process may hold only so many sockets. Everything stays on 127.0.0.0/8.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import resource
import struct
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench.peersim import PROTOCOL, RESERVED, UT_METADATA, SimPeer, SimTorrent, _bitfield, addresses
from tracker_watch.demo.tracker import LocalTracker
from tracker_watch.domain import bencode

QUIET_S = 3.0
PEERS_PER_SHARD = 1500  # simulated peers per worker process: ~5 sockets each, under a 20,000-descriptor limit


class LoadTorrent(SimTorrent):
    """One SHA-256 per piece, repeated: 10,000 torrents are made in a second (SimTorrent's content takes minutes)."""

    def piece(self, i: int) -> bytes:
        seed = hashlib.sha256(self.index.to_bytes(8, "big") + i.to_bytes(8, "big")).digest()
        return seed * (self.piece_length // 32)


@dataclass
class CountingPeer(SimPeer):
    """A simulated peer that records when the monitor first reached it for each of its torrents."""

    contacts_n: int = 0
    last_activity: float = 0.0
    first_contact: dict[bytes, float] = field(default_factory=dict)

    async def start(self, http: aiohttp.ClientSession) -> None:
        self.peer_id = b"-SIM001-" + hashlib.sha1(self.ip.encode()).digest()[:12]
        self._server = await asyncio.start_server(self._serve, self.ip, 0, backlog=64)
        self.port = self._server.sockets[0].getsockname()[1]
        self.started_at = time.time()
        # one short-lived connection per announce: 10,000 kept-alive ones would cost 20,000 descriptors here
        self._http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(self.ip, 0), force_close=True))
        for torrent in self.torrents.values():
            self._spawn(self._announce(self._http, torrent))

    async def _dial(self, peer: tuple[str, int], info_hash: bytes, dialled: set[tuple[str, int]]) -> None:
        try:
            reader, writer = await asyncio.open_connection(peer[0], peer[1], local_addr=(self.ip, 0))
        except OSError:
            dialled.discard(peer)
            return
        writer.write(PROTOCOL + RESERVED + info_hash + self.peer_id)
        await self._talk(reader, writer, dialled_out=True)

    async def _talk(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, dialled_out: bool) -> None:
        # bench/peersim.py's conversation, with the contact recorded once the handshake names a torrent
        try:
            hs = await reader.readexactly(68)
            torrent = self.torrents.get(hs[28:48])
            if hs[:20] != PROTOCOL or torrent is None:
                return
            now = time.time()
            self.contacts_n += 1
            self.last_activity = now
            self.first_contact.setdefault(torrent.info_hash, now)
            if not dialled_out:
                writer.write(PROTOCOL + RESERVED + torrent.info_hash + self.peer_id)
            ext = bencode.encode({b"m": {b"ut_metadata": UT_METADATA}, b"metadata_size": len(torrent.info),
                                  b"v": b"peersim"})
            writer.write(struct.pack(">IBB", 2 + len(ext), 20, 0) + ext)
            bits = _bitfield(torrent.pieces)
            writer.write(struct.pack(">IB", 1 + len(bits), 5) + bits + struct.pack(">IB", 1, 1))
            await writer.drain()
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


def raise_fd_limit() -> int:
    """Thousands of sockets per process: lift the soft limit to the hard one (root may lift both)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for want in (262_144, hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(want, hard)))
            return want
        except (ValueError, OSError):
            continue
    return soft


def _peers(args: argparse.Namespace, tracker_url: str) -> list[CountingPeer]:
    n = args.swarms
    torrents = [LoadTorrent(i, piece_length=16384, pieces=4) for i in range(n)]
    ips = list(addresses(n))
    return [CountingPeer(ips[j], {torrents[(j + k) % n].info_hash: torrents[(j + k) % n] for k in range(args.peers)},
                         tracker_url) for j in range(args.worker, n, args.shards)]


async def worker(args: argparse.Namespace) -> None:
    """One shard of the peers (a process holds at most RLIMIT_NOFILE sockets): start on `go`, report, stop."""
    raise_fd_limit()
    peers = _peers(args, args.tracker)
    loop = asyncio.get_running_loop()
    if not await loop.run_in_executor(None, sys.stdin.readline):  # go, or the coordinator is gone: nothing to do
        return
    async with aiohttp.ClientSession() as http:
        for i in range(0, len(peers), 100):
            await asyncio.gather(*(p.start(http) for p in peers[i:i + 100]))
        started = time.time()
        stop = loop.run_in_executor(None, sys.stdin.readline)
        while not stop.done():
            print("P", json.dumps([sum(len(p.first_contact) for p in peers), sum(p.blocks_sent for p in peers),
                                   max(p.last_activity for p in peers)]), flush=True)
            await asyncio.sleep(0.5)
        firsts = [t for p in peers for t in p.first_contact.values()]
        print("R", json.dumps({"firsts": firsts, "contacts": sum(p.contacts_n for p in peers),
                               "blocks": sum(p.blocks_sent for p in peers), "started": started,
                               "last": max(p.last_activity for p in peers)}), flush=True)
        for p in peers:
            await p.stop()


async def main_async(args: argparse.Namespace) -> None:
    raise_fd_limit()
    tracker = LocalTracker(interval=60, peer_ttl=3600)
    await tracker.start()
    print("TRACKER", tracker.url, flush=True)
    n, shards = args.swarms, max(1, -(-args.swarms // PEERS_PER_SHARD))
    me = [sys.executable, "-m", "bench.loadgen", "--swarms", str(n), "--peers", str(args.peers), "--shards",
          str(shards), "--tracker", tracker.url]
    workers = [await asyncio.create_subprocess_exec(*me, "--worker", str(j), stdin=asyncio.subprocess.PIPE,
                                                    stdout=asyncio.subprocess.PIPE) for j in range(shards)]
    infohashes = [LoadTorrent(i, piece_length=16384, pieces=4).info_hash for i in range(n)]

    def monitored(h: bytes) -> bool:
        swarm = tracker.swarms.get(h)
        return swarm is not None and set(args.monitor_ip) <= {ip for ip, _ in swarm.peers}

    while True:  # the load starts once the monitor can be found in every swarm
        if all(monitored(h) for h in infohashes):
            break
        await asyncio.sleep(0.5)
    load_start = time.time()
    print("LOAD", load_start, flush=True)
    progress = [[0, 0, 0.0] for _ in workers]
    readers = [asyncio.create_task(_follow(w, progress[j])) for j, w in enumerate(workers)]
    for w in workers:
        assert w.stdin is not None
        w.stdin.write(b"go\n")
    pairs = n * args.peers
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        contacted, blocks = sum(p[0] for p in progress), sum(p[1] for p in progress)
        if contacted >= pairs and blocks >= pairs and time.time() - max(p[2] for p in progress) > QUIET_S:
            break
    for w in workers:
        assert w.stdin is not None
        w.stdin.write(b"stop\n")
    shard = [await r for r in readers]
    for w in workers:
        await w.wait()
    await tracker.stop()
    firsts = sorted(t - load_start for r in shard for t in r["firsts"])
    last = max(r["last"] for r in shard)
    result = {"swarms": n, "peers_per_swarm": args.peers, "sim_peers": n, "shards": shards, "pairs": pairs,
              "pairs_contacted": len(firsts), "contacts": sum(r["contacts"] for r in shard),
              "blocks_served": sum(r["blocks"] for r in shard), "load_start": load_start,
              "peers_started_s": max(r["started"] for r in shard) - load_start,
              "all_contacted_s": firsts[-1] if firsts else float("nan"),
              "first_contact_quantiles_s": [firsts[int(q * (len(firsts) - 1))] for q in (0.1, 0.5, 0.9)]
              if firsts else [], "last_activity": last, "busy_s": last - load_start}
    print("RESULT", json.dumps(result), flush=True)


async def _follow(proc: asyncio.subprocess.Process, progress: list[float]) -> dict[str, Any]:
    """A worker's progress lines into `progress`; returns its final report."""
    assert proc.stdout is not None
    async for raw in proc.stdout:
        line = raw.decode()
        if line.startswith("P "):
            progress[:] = json.loads(line[2:])
        elif line.startswith("R "):
            return dict(json.loads(line[2:]))
    raise RuntimeError("a load generator worker ended without its report")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__.split("\n")[0])
    p.add_argument("--swarms", type=int, required=True)
    p.add_argument("--peers", type=int, default=2)
    p.add_argument("--monitor-ip", nargs="+", default=["127.0.0.2"], help="every address the monitor announces")
    p.add_argument("--timeout", type=float, default=300.0)
    p.add_argument("--shards", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    p.add_argument("--tracker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    from bench.common import run

    run(lambda: main_async(args) if args.worker is None else worker(args))


if __name__ == "__main__":
    main()
