"""The daemon, as configured by default (probe mode), proves every seeder of a pure v2 torrent — which our
TCP wire client cannot check — through lanes (swarm/lanes.py): each verified row rests on a whole piece from
that seeder alone, carries the piece's SHA-256 and our probe address; nothing is uploaded, nothing stays."""

from __future__ import annotations

import glob
import tempfile
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SettingsFactory
from tests.helpers import wait_for_async
from tracker_watch.daemon import Daemon
from tracker_watch.demo.run import PROBE_IP
from tracker_watch.demo.swarm import LocalSwarm
from tracker_watch.domain.targets import parse_target
from tracker_watch.ledger.targets import TargetStore

SEEDERS = ["127.0.0.191", "127.0.0.192"]  # this module's own addresses
UTP_SEEDERS = ["127.0.0.193", "127.0.0.194"]
PIECE = 64 * 1024


@pytest.fixture
async def v2_swarm() -> AsyncIterator[LocalSwarm]:
    swarm = await LocalSwarm(seeders=len(SEEDERS), seeder_addresses=SEEDERS, decoy=False, version="v2",
                             size=8 * PIECE, piece_length=PIECE, tracker_interval=2).start()
    try:
        yield swarm
    finally:
        await swarm.stop()


async def test_pure_v2_seeders_are_proven_through_lanes(make_settings: SettingsFactory,
                                                         v2_swarm: LocalSwarm) -> None:
    before = set(glob.glob(str(Path(tempfile.gettempdir()) / "tw-lane-*")))
    daemon = Daemon(make_settings())
    await daemon.start()
    try:
        target = replace(parse_target(v2_swarm.content.torrent), trackers=(v2_swarm.tracker.url,))
        await TargetStore(daemon.db.pool).register(target, "Studio", "Film", actor="test")

        async def all_proven() -> bool:
            rows = await daemon.db.pool.fetch("SELECT host(ip) AS ip FROM observations WHERE grade = 'verified'")
            return {r["ip"] for r in rows} >= set(SEEDERS)

        await wait_for_async(all_proven, timeout=120)
        for row in await daemon.db.pool.fetch("SELECT * FROM observations WHERE grade = 'verified'"):
            assert row["piece_bytes"] == PIECE  # a whole piece, from that seeder alone
            assert row["piece_sha256"] is not None
            assert row["piece_sha1"] is None  # pure v2: libtorrent checked the merkle proof, there is no SHA-1
            assert str(row["our_ip"]) == PROBE_IP
            assert row["peer_id"] is not None
        engine: Any = daemon.engine
        assert engine.verifier.stats["lanes"] >= len(SEEDERS)
        assert engine.uploaded_payload_bytes() == 0
        assert engine.upload_tripwire == 0
        for seeder in v2_swarm.peers:
            assert seeder.handle.status().total_payload_download == 0  # no seeder got a byte of payload from us
    finally:
        await daemon.stop()
    assert set(glob.glob(str(Path(tempfile.gettempdir()) / "tw-lane-*"))) - before == set()


async def test_a_utp_only_seeder_is_proven_through_a_lane(make_settings: SettingsFactory) -> None:
    """One seeder takes uTP only: our TCP probe cannot have its piece, so a lane proves it; the other seeder
    is proven by the TCP probe as before."""
    utp_only = {"enable_incoming_tcp": False, "enable_outgoing_tcp": False}
    swarm = await LocalSwarm(seeders=2, seeder_addresses=UTP_SEEDERS, seeder_settings={1: utp_only}, decoy=False,
                             version="v1", size=8 * PIECE, piece_length=PIECE, tracker_interval=2).start()
    daemon = Daemon(make_settings())
    await daemon.start()
    try:
        await TargetStore(daemon.db.pool).register(parse_target(swarm.content.magnet([swarm.tracker.url])),
                                                   "Studio", "Film", actor="test")

        async def all_proven() -> bool:
            rows = await daemon.db.pool.fetch("SELECT host(ip) AS ip FROM observations WHERE grade = 'verified'")
            return {r["ip"] for r in rows} >= set(UTP_SEEDERS)

        await wait_for_async(all_proven, timeout=120)
        rows = await daemon.db.pool.fetch("SELECT * FROM observations WHERE grade = 'verified' AND host(ip) = $1",
                                          UTP_SEEDERS[1])
        assert rows[0]["piece_sha1"] is not None
        assert rows[0]["piece_bytes"] == PIECE
        assert str(rows[0]["our_ip"]) == PROBE_IP
        engine: Any = daemon.engine
        assert engine.verifier.stats["lanes"] >= 1
        assert engine.uploaded_payload_bytes() == 0
        for seeder in swarm.peers:
            assert seeder.handle.status().total_payload_download == 0
    finally:
        await daemon.stop()
        await swarm.stop()
