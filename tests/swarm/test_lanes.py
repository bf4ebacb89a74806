"""Lanes (swarm/lanes.py): a single-peer libtorrent session proves a uTP-only peer and a pure v2 torrent,
which the wire client cannot; the peer alone served the piece, nothing was uploaded, nothing stays on disk."""

from __future__ import annotations

import asyncio
import glob
import socket
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import libtorrent as lt
import pytest

from tests.helpers import wait_for
from tests.swarm.wire_peers import PROBE_IP, FakePeer, LtSeeder, content, start_seeder
from tracker_watch.config import settings_from_mapping
from tracker_watch.domain import peerwire as pw
from tracker_watch.domain.peers import PeerEvent, PeerSnapshot, PieceSettled
from tracker_watch.domain.targets import v1_piece_hashes
from tracker_watch.swarm.lanes import LANE_AFTER, lane_probe
from tracker_watch.swarm.verifier import Verifier
from tracker_watch.swarm.wire import Reason

UTP_ONLY = {"enable_incoming_tcp": False, "enable_outgoing_tcp": False}


def _info(torrent: bytes) -> bytes:
    return bytes(lt.torrent_info(torrent).info_section())


def _lane_dirs() -> set[str]:
    return set(glob.glob(str(Path(tempfile.gettempdir()) / "tw-lane-*")))


@dataclass
class View:
    """The verifier's view of a real libtorrent seeder's torrent (swarm/swarm.py's Swarm in the daemon)."""

    seeder: LtSeeder
    key: str = ""
    info_hash_v1: bytes | None = None
    info: bytes | None = None

    def __post_init__(self) -> None:
        hashes = self.seeder.ti.info_hashes()
        self.info = _info(self.seeder.content.torrent)
        self.info_hash_v1 = bytes(hashes.v1.to_bytes()) if hashes.has_v1() else None
        self.key = (self.info_hash_v1 or bytes(hashes.v2.to_bytes())).hex()

    def piece_hashes(self) -> bytes | None:
        return v1_piece_hashes(self.info) if self.info is not None else None

    def piece_size(self, piece: int) -> int:
        return int(self.seeder.ti.piece_size(piece))


@pytest.fixture
async def no_lane_left() -> AsyncIterator[None]:
    before = _lane_dirs()
    yield
    assert _lane_dirs() - before == set()  # every lane's temp directory (its payload) is gone


async def _verify_through(seeder: LtSeeder) -> tuple[Verifier, list[PeerEvent]]:
    settings = settings_from_mapping({"verify": {"probe_interface": PROBE_IP, "retry_base_s": 1.0,
                                                 "probe_timeout_s": 60.0}}).verify
    events: list[PeerEvent] = []
    v = Verifier(settings, events.append, [PROBE_IP], session_ips={"127.0.0.1"})
    view = View(seeder)
    task = asyncio.create_task(v.run())
    try:
        v.attach(view)
        v.offer(view.key, (seeder.ip, seeder.port), 1)
        await wait_for(lambda: v.stats["verified"] == 1, timeout=90)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return v, events


def _assert_sole_source_rows(seeder: LtSeeder, events: list[PeerEvent]) -> None:
    settled = [e for e in events if isinstance(e, PieceSettled)]
    assert [(e.passed, [c[0] for c in e.contributions]) for e in settled] == [(True, [(seeder.ip, seeder.port)])]
    assert settled[0].sha256 is not None
    snaps = [e for e in events if isinstance(e, PeerSnapshot) and e.handshake_done]
    assert snaps
    assert snaps[-1].local is not None
    assert snaps[-1].local[0] == PROBE_IP  # the lane came from the verifier's address, never the session's
    assert snaps[-1].peer_id
    assert snaps[-1].client


async def test_utp_only_seeder_is_verified_through_a_lane_after_tcp_failed(no_lane_left: None) -> None:
    seeder = await start_seeder("127.0.0.121", extra=UTP_ONLY)
    try:
        tcp = await seeder.probe(1)
        assert tcp.verified is None
        assert tcp.reason in LANE_AFTER  # libtorrent takes the TCP connection, then drops it
        await wait_for(lambda: not seeder.handle.get_peer_info())
        v, events = await _verify_through(seeder)
        assert v.stats["lanes"] == 1
        assert v.stats["probes"] == 2  # the TCP probe and the lane: both count against the day's budget
        _assert_sole_source_rows(seeder, events)
        assert seeder.handle.status().total_payload_download == 0  # 0 bytes uploaded to it
    finally:
        seeder.stop()


async def test_pure_v2_torrent_is_verified_through_a_lane(no_lane_left: None) -> None:
    seeder = await start_seeder("127.0.0.122", version="v2")
    try:
        await wait_for(lambda: seeder.handle.status().is_seeding)
        v, events = await _verify_through(seeder)
        assert v.stats["lanes"] == v.stats["probes"] == 1  # no TCP probe: the wire client checks v1 only
        _assert_sole_source_rows(seeder, events)
        settled = [e for e in events if isinstance(e, PieceSettled)]
        assert settled[0].sha1 is None  # pure v2: no v1 hash; libtorrent checked the merkle proof
        assert seeder.handle.status().total_payload_download == 0
    finally:
        seeder.stop()


async def test_a_lane_uploads_nothing_and_leaves_nothing(no_lane_left: None) -> None:
    seeder = await start_seeder("127.0.0.123", extra=UTP_ONLY)
    try:
        r = await lane_probe(seeder.ip, seeder.port, _info(seeder.content.torrent), 1, local_ip=PROBE_IP,
                             timeout=60)
        assert r.verified is True, (r.reason, r.detail)
        assert r.attempts == ["lane", "utp"]
        assert r.piece_index == 1
        assert r.payload_bytes >= seeder.ti.piece_size(1)
        assert seeder.handle.status().total_payload_upload >= seeder.ti.piece_size(1)  # it served us
        assert seeder.handle.status().total_payload_download == 0  # we served it nothing
        assert r.bytes_sent < 16384  # protocol chatter only
    finally:
        seeder.stop()


async def test_a_partial_seeder_serves_a_piece_it_has_in_the_lane(no_lane_left: None) -> None:
    seeder = await start_seeder("127.0.0.124", only={2}, extra=UTP_ONLY)
    try:
        r = await lane_probe(seeder.ip, seeder.port, _info(seeder.content.torrent), 0, local_ip=PROBE_IP,
                             timeout=60)
        assert r.verified is True, (r.reason, r.detail)
        assert r.piece_index == 2
    finally:
        seeder.stop()


async def test_a_closed_port_ends_the_lane_unverified(no_lane_left: None) -> None:
    c = await content()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # a port nobody listens on
        sock.bind(("127.0.0.125", 0))
        port = sock.getsockname()[1]
    r = await lane_probe("127.0.0.125", port, _info(c.torrent), 0, local_ip=PROBE_IP, timeout=60)
    assert r.verified is None
    assert r.reason == Reason.UNREACHABLE
    assert not r.connected


async def test_a_liar_alone_in_a_lane_is_proven_corrupt(no_lane_left: None) -> None:
    """A peer that claims every piece and serves zeros (TCP: the lane falls back from uTP): the piece it alone
    sent fails libtorrent's hash check in the lane, which is sole-source proof against it."""
    c = await content()
    ti = lt.torrent_info(c.torrent)
    assert c.v1 is not None
    liar = await FakePeer("127.0.0.126", [bytes(ti.piece_size(i)) for i in range(c.num_pieces)],
                          info_hash=c.v1).start()
    try:
        r = await lane_probe(liar.ip, liar.port, _info(c.torrent), 0, local_ip=PROBE_IP, timeout=60)
        assert r.verified is False, (r.reason, r.detail)
        assert r.peer_id is not None  # the corrupt row names it
        assert r.reason == Reason.HASH_MISMATCH
        assert liar.received is not None
        assert not [m for m in liar.received if m.kind == pw.PIECE]  # we sent it no payload
    finally:
        await liar.stop()
