"""Issue 12's acceptance test: a swarm of real third-party clients from Debian (Transmission, aria2, rtorrent,
qBittorrent) beside libtorrent seeders, a decoy that only announces and a liar that answers with random bytes.
The daemon, as configured by default (probe mode), must prove every distributor by a piece that it alone
delivered, list the decoy and nothing more, never call the liar verified, upload nothing, and stay within the
download budget: 1.25 × verified peers × piece length."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SettingsFactory
from tests.helpers import wait_for_async
from tracker_watch.daemon import Daemon
from tracker_watch.demo import clients
from tracker_watch.demo.run import PROBE_IP
from tracker_watch.demo.swarm import LocalSwarm
from tracker_watch.domain.targets import parse_target, v1_piece_hashes
from tracker_watch.ledger.targets import TargetStore

# addresses of this module's own (other tests use .11-.77, .100-.120, .150-.170)
CLIENT_IPS: dict[clients.Kind, str] = {"transmission": "127.0.0.181", "aria2": "127.0.0.182",
                                       "rtorrent": "127.0.0.183", "qbittorrent": "127.0.0.184"}
LIBTORRENT_IPS = ["127.0.0.185", "127.0.0.186"]
DECOY, LIAR = "127.0.0.187", "127.0.0.188"
PIECE = 64 * 1024


@pytest.fixture
async def mixed(tmp_path: Path) -> AsyncIterator[tuple[LocalSwarm, list[clients.RealSeeder]]]:
    swarm = await LocalSwarm(seeders=len(LIBTORRENT_IPS), seeder_addresses=LIBTORRENT_IPS, decoy=True, liar=True,
                             decoy_ip=DECOY, liar_ip=LIAR, version="v1", piece_length=PIECE,
                             tracker_interval=2).start()
    seeders: list[clients.RealSeeder] = []
    try:
        for kind, ip in CLIENT_IPS.items():
            if clients.available(kind):
                seeders.append(await clients.start_seeder(kind, swarm.content, ip, workdir=tmp_path,
                                                          tracker_url=swarm.tracker.url))
        if len(seeders) < 2 and not os.environ.get("CI"):
            pytest.skip("fewer than two Debian BitTorrent clients installed (.ci/run installs them)")
        assert len(seeders) >= 2, "CI must have the Debian clients (.ci/run installs them)"
        yield swarm, seeders
    finally:
        for seeder in seeders:
            await seeder.stop()
        await swarm.stop()


async def grades(daemon: Daemon) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for r in await daemon.db.pool.fetch("SELECT host(ip) AS ip, grade FROM observations"):
        out.setdefault(r["ip"], set()).add(r["grade"])
    return out


async def test_every_real_distributor_is_proven_by_its_own_piece(
        make_settings: SettingsFactory, mixed: tuple[LocalSwarm, list[clients.RealSeeder]]) -> None:
    swarm, seeders = mixed
    distributors = [s.ip for s in seeders] + LIBTORRENT_IPS
    daemon = Daemon(make_settings())  # with verify.method = "session", Transmission and rtorrent stay unproven
    await daemon.start()
    try:
        await TargetStore(daemon.db.pool).register(parse_target(swarm.content.magnet([swarm.tracker.url])),
                                                   "Studio", "Film", actor="test")

        async def all_proven() -> bool:
            g = await grades(daemon)
            return all("verified" in g.get(ip, set()) for ip in distributors) and DECOY in g and (
                "corrupt" in g.get(LIAR, set()))

        try:
            await wait_for_async(all_proven, timeout=120)
        except TimeoutError:
            logs = {s.kind: s.log_tail()[-500:] for s in seeders}
            pytest.fail(f"not all proven in 120 s: {await grades(daemon)}; clients: {logs}")
        g = await grades(daemon)
        assert g[DECOY] == {"listed"}  # a tracker named it; nothing more, ever
        assert "verified" not in g[LIAR]
        hashes = v1_piece_hashes(parse_target(swarm.content.torrent).info or b"")
        assert hashes is not None
        verified = await daemon.db.pool.fetch("SELECT * FROM observations WHERE grade = 'verified'")
        for row in verified:  # each verdict rests on a whole piece from that peer alone, over our own connection
            i = row["piece_index"]
            assert row["piece_sha1"] == hashes[i * 20:i * 20 + 20]
            assert row["piece_bytes"] == PIECE
            assert str(row["our_ip"]) == PROBE_IP
            assert row["peer_id"] is not None
        clients_named = {str(r["ip"]): r["client"] for r in verified}
        for seeder in seeders:
            assert clients_named[seeder.ip], seeder.kind  # the client said who it is (BEP 10 `v`)
        engine: Any = daemon.engine
        assert engine.uploaded_payload_bytes() == 0
        assert engine.upload_tripwire == 0
        assert engine.counters.get("net.recv_payload_bytes", 0) == 0  # the session itself downloaded nothing
        downloaded = engine.verifier.stats["payload_bytes"]
        assert downloaded <= 1.25 * len(distributors) * PIECE, (downloaded, engine.verifier.stats)
    finally:
        await daemon.stop()
