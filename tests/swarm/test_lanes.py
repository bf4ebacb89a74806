"""Lanes (swarm/lanes.py): a single-peer libtorrent session proves a uTP-only peer and a pure v2 torrent,
which the wire client cannot; the peer alone served the piece, nothing was uploaded, nothing stays on disk."""

from __future__ import annotations

import glob
import tempfile
from pathlib import Path

import libtorrent as lt

from tests.helpers import wait_for
from tests.swarm.wire_peers import PROBE_IP, start_seeder
from tracker_watch.swarm.lanes import LANE_AFTER, lane_probe
from tracker_watch.swarm.wire import Reason

UTP_ONLY = {"enable_incoming_tcp": False, "enable_outgoing_tcp": False}


def _info(torrent: bytes) -> bytes:
    return bytes(lt.torrent_info(torrent).info_section())


def _lane_dirs() -> set[str]:
    return set(glob.glob(str(Path(tempfile.gettempdir()) / "tw-lane-*")))


async def test_utp_only_seeder_is_verified_in_a_lane_where_tcp_cannot_reach_it() -> None:
    seeder = await start_seeder("127.0.0.121", extra=UTP_ONLY)
    before = _lane_dirs()
    try:
        tcp = await seeder.probe(1)
        assert tcp.verified is None and tcp.reason in LANE_AFTER  # libtorrent accepts TCP, then drops it
        r = await lane_probe(seeder.ip, seeder.port, _info(seeder.content.torrent), 1, local_ip=PROBE_IP,
                             timeout=60)
        assert r.verified is True, (r.reason, r.detail)
        assert r.piece_index == 1 and r.payload_bytes >= seeder.ti.piece_size(1)
        assert r.local is not None and r.local[0] == PROBE_IP
        assert r.peer_id and r.client and r.sha256 is not None
        up = seeder.handle.status()
        assert up.total_payload_upload >= seeder.ti.piece_size(1)  # the seeder served it, over uTP
    finally:
        seeder.stop()
    assert _lane_dirs() - before == set()  # no payload left on disk


async def test_pure_v2_torrent_is_verified_in_a_lane() -> None:
    seeder = await start_seeder("127.0.0.122", version="v2")
    before = _lane_dirs()
    try:
        await wait_for(lambda: seeder.handle.status().is_seeding)
        r = await lane_probe(seeder.ip, seeder.port, _info(seeder.content.torrent), 2, local_ip=PROBE_IP,
                             timeout=60)
        assert r.verified is True, (r.reason, r.detail)
        assert r.bytes_sent < 16384  # protocol chatter only: 0 payload bytes uploaded (checked in the lane)
    finally:
        seeder.stop()
    assert _lane_dirs() - before == set()
