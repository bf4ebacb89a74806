"""Homogeneous swarms, where libtorrent's piece picker left 39 % of peers unproven: 5, 20 and 50 identical fast
seeds (the benchmark's simulated peers, bench/peersim.py), and every one must be verified by its own piece."""

from __future__ import annotations

import aiohttp
import pytest

from bench.peersim import SimPeer, SimTorrent, addresses
from tests.conftest import SettingsFactory
from tests.helpers import wait_for_async
from tracker_watch.daemon import Daemon
from tracker_watch.demo.tracker import LocalTracker
from tracker_watch.domain import bencode
from tracker_watch.domain.targets import parse_target
from tracker_watch.ledger.targets import TargetStore


@pytest.mark.parametrize("seeds", [5, 20, 50])
async def test_every_identical_seed_is_verified(make_settings: SettingsFactory, seeds: int) -> None:
    # the seeds re-announce every 3 s: they dial the monitor once the tracker lists it (see bench/peersim.py)
    tracker = LocalTracker(interval=3)
    await tracker.start()
    torrent = SimTorrent(1000 + seeds)
    daemon = Daemon(make_settings(swarm={"connections_limit": 400}))
    await daemon.start()
    ips = addresses(seeds)
    peers = [SimPeer(next(ips), {torrent.info_hash: torrent}, tracker.url) for _ in range(seeds)]
    try:
        async with aiohttp.ClientSession() as http:
            for peer in peers:
                await peer.start(http)
            await TargetStore(daemon.db.pool).register(parse_target(torrent.magnet(tracker.url)), "Studio", "Film",
                                                       actor="test")

            async def verified() -> set[str]:
                rows = await daemon.db.pool.fetch("SELECT DISTINCT host(ip) AS ip FROM observations "
                                                  "WHERE grade = 'verified'")
                return {r["ip"] for r in rows}

            async def all_verified() -> bool:
                return {p.ip for p in peers} <= await verified()

            try:
                await wait_for_async(all_verified, timeout=120)
            except TimeoutError:
                missing = {p.ip for p in peers} - await verified()
                pytest.fail(f"{len(missing)} of {seeds} never verified: {sorted(missing)[:10]}")
            # one piece each: the budget, not libtorrent's appetite
            assert daemon.engine is not None
            assert daemon.engine.verifier is not None
            stats = daemon.engine.verifier.stats
            assert stats["verified"] == seeds
            assert stats["payload_bytes"] <= 1.25 * seeds * torrent.piece_length
            assert daemon.engine.uploaded_payload_bytes() == 0
    finally:
        for peer in peers:
            await peer.stop()
        await daemon.stop()
        await tracker.stop()


async def test_a_peer_behind_nat_is_verified_on_the_connection_it_opened(make_settings: SettingsFactory) -> None:
    """A peer we cannot dial (the port it announces is closed, as behind NAT) but that dials the address the
    tracker lists for us: the verifier's listener proves it on that very connection."""
    tracker = LocalTracker(interval=60)
    await tracker.start()
    torrent = SimTorrent(2000)
    daemon = Daemon(make_settings())
    await daemon.start()
    peer = SimPeer("127.1.200.1", {torrent.info_hash: torrent}, tracker.url)
    try:
        # by .torrent: nobody dialable could hand us the metadata of a magnet here
        dot_torrent = bencode.encode({b"announce": tracker.url.encode(), b"info": bencode.decode(torrent.info)})
        await TargetStore(daemon.db.pool).register(parse_target(dot_torrent), "Studio", "Film", actor="test")
        assert daemon.engine is not None
        port = daemon.engine.announce_port()
        await wait_for_async(lambda: _listed(tracker, torrent.info_hash, port), timeout=30)
        async with aiohttp.ClientSession() as http:
            await peer.start(http)
            peer.port = 9  # what it announces from now on: nobody listens there (the discard port)

            async def verified_incoming() -> bool:
                rows = await daemon.db.pool.fetch("SELECT source FROM observations WHERE host(ip) = $1 AND "
                                                  "grade = 'verified'", peer.ip)
                return bool(rows)

            await wait_for_async(verified_incoming, timeout=60)
        rows = await daemon.db.pool.fetch("SELECT * FROM observations WHERE host(ip) = $1 AND grade = 'verified'",
                                          peer.ip)
        assert {r["source"] for r in rows} <= {"incoming", "tracker"}
        assert all(r["port"] != 9 for r in rows)  # the port it connected from, which its ISP can trace
    finally:
        await peer.stop()
        await daemon.stop()
        await tracker.stop()


async def _listed(tracker: LocalTracker, info_hash: bytes, port: int) -> bool:
    swarm = tracker.swarms.get(info_hash)
    return swarm is not None and any(p[1] == port for p in swarm.peers)
