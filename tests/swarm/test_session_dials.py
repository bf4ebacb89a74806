"""Session mode (`verify.method = "session"`) with a real libtorrent session: a dial that fails leaves the
peer a candidate for its dial grace, so the piece wanted on its behalf stays wanted (libtorrent tries the
next way in: uTP then TCP, MSE then plaintext). Before, the failed dial took the peer off the planner and
the piece was unwanted until a sample saw the peer connected — a flap that could stall a piece at a hash
failure (tests/swarm/test_smart_ban.py)."""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path

from tests.conftest import SettingsFactory
from tests.swarm.helpers import EngineUnderTest, wait_for
from tracker_watch.demo.swarm import make_content
from tracker_watch.domain.evidence import Source
from tracker_watch.domain.peers import PeerGone
from tracker_watch.domain.targets import parse_target
from tracker_watch.swarm.swarm import SwarmSpec

SILENT_IP = "127.0.0.226"  # this module's own address: nothing listens there (others: see test_engine.py)


def _closed_port() -> int:
    with socket.socket() as s:  # a port that was free a moment ago: a dial to it is refused
        s.bind((SILENT_IP, 0))
        port: int = s.getsockname()[1]
        return port


async def test_a_failed_dial_keeps_the_wanted_piece(make_settings: SettingsFactory) -> None:
    content = make_content(Path(tempfile.mkdtemp(prefix="tw-dials-")), size=4 * 16384, piece_length=16384,
                           version="v1")
    assert content.v1 is not None
    eut = EngineUnderTest(make_settings(verify={"method": "session"}))
    await eut.engine.start()
    try:
        swarm = eut.engine.watch(SwarmSpec(key=content.v1.hex(), infohash_v1=content.v1, infohash_v2=None,
                                           info=parse_target(content.torrent).info, trackers=()))
        await wait_for(lambda: swarm.planner is not None, timeout=30)
        assert swarm.planner is not None
        swarm.planner.dial_grace_s = 600.0  # a loaded machine may take long to give up the dials: no race with it
        peer = (SILENT_IP, _closed_port())
        eut.engine.add_peer(swarm.key, peer, Source.TRACKER)
        await wait_for(lambda: any(e.peer == peer and e.connect_failed for e in eut.of(PeerGone)), timeout=30)
        swarm.sample_now()  # plan again, as the next sample would
        assert peer in swarm.planner.dialling
        assert set(swarm.planner.assigned.values()) == {peer}  # its piece is still wanted on its behalf
        assert all(swarm.handle.piece_priority(p) > 0 for p in swarm.planner.wanted)
    finally:
        await eut.engine.stop()
