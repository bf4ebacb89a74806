"""Smart-ban's silent ban (issue 12, item 5), reproduced with two scripted peers and the session downloading
(`verify.method = "session"`), libtorrent's default plugins (smart_ban among them) on, as the product runs.

The torrent is one piece of four blocks. In the first round the liar L answers only the even blocks, with
garbage, and rejects the odd ones (BEP 6); the honest H answers only the odd blocks, correctly, and rejects
the even ones. The piece fails with blocks from both: nobody is its sole source, so that failure blames no
one. In the second round L rejects everything and H serves everything: the piece passes, smart-ban compares
the blocks of the two attempts, finds L's differ and drops L with "peer banned" — no peer_ban_alert. The ban
is recorded (tracker_watch_peers_banned_total{how="disconnect"}, log peer_banned_by_libtorrent), and judged by
the README's rule: L took part in a failed piece and none of its data ever passed, so it is corrupt (PeerLied);
H's data passed, so it is never blamed.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import REGISTRY

from tests.conftest import SettingsFactory
from tests.swarm.helpers import EngineUnderTest, wait_for
from tests.swarm.wire_peers import FakePeer
from tracker_watch.demo.swarm import make_content
from tracker_watch.domain import peerwire as pw
from tracker_watch.domain.evidence import Source
from tracker_watch.domain.peers import PeerLied, PieceSettled
from tracker_watch.domain.targets import parse_target
from tracker_watch.swarm.swarm import SwarmSpec

LIAR_IP, HONEST_IP = "127.0.0.224", "127.0.0.225"  # this module's own (others: see tests/swarm/test_engine.py)
BLOCKS = 4


@dataclass
class Script:
    """Both peers' shared plan: round 1 until every block was delivered once, then round 2."""

    piece: bytes
    delivered: set[int] = field(default_factory=set)
    served: dict[str, list[tuple[int, int]]] = field(default_factory=lambda: {"L": [], "H": []})  # (round, block)

    @property
    def round(self) -> int:
        return 1 if len(self.delivered) < BLOCKS else 2

    def answer(self, role: str, msg: pw.Message) -> pw.Message:
        block, rnd = msg.begin // pw.BLOCK, self.round
        if (rnd == 1 and (block % 2 == 0) == (role == "L")) or (rnd == 2 and role == "H"):
            data = self.piece[msg.begin:msg.begin + msg.length]
            if role == "L":
                data = bytes(b ^ 0x5A for b in data)  # wrong, and the same wrong bytes every time
            self.served[role].append((rnd, block))
            if rnd == 1:
                self.delivered.add(block)
            return pw.Message(pw.PIECE, index=msg.index, begin=msg.begin, length=len(data), data=data)
        return pw.Message(pw.REJECT, index=msg.index, begin=msg.begin, length=msg.length)


@dataclass
class Scripted(FakePeer):
    role: str = "H"
    script: Script | None = None

    def _answer(self, msg: pw.Message) -> list[pw.Message]:
        if msg.kind == pw.REQUEST:
            assert self.script is not None
            return [self.script.answer(self.role, msg)]
        return super()._answer(msg)


def _banned(how: str) -> float:
    return REGISTRY.get_sample_value("tracker_watch_peers_banned_total", {"how": how}) or 0.0


async def test_smart_ban_drops_the_liar_silently_and_the_ban_is_judged(make_settings: SettingsFactory) -> None:
    content = make_content(Path(tempfile.mkdtemp(prefix="tw-smartban-")), size=BLOCKS * pw.BLOCK,
                           piece_length=BLOCKS * pw.BLOCK, version="v1")
    assert content.v1 is not None
    piece = (content.data_dir / content.name).read_bytes()
    script = Script(piece)
    liar = await Scripted(LIAR_IP, [piece], info_hash=content.v1, peer_id=b"-FK0001-" + os.urandom(12),
                          role="L", script=script).start()
    honest = await Scripted(HONEST_IP, [piece], info_hash=content.v1, peer_id=b"-FK0002-" + os.urandom(12),
                            role="H", script=script).start()
    eut = EngineUnderTest(make_settings(verify={"method": "session"}))
    await eut.engine.start()
    # our peers speak plain TCP only: libtorrent's first dials (uTP, then MSE) fail before plain TCP connects;
    # those failed dials leave the peers candidates (planner.peer_gone), so piece 0 stays wanted throughout. And
    # no parole after the failure (swarm/settings.py): with it the piece stalled whenever L was asked first
    alerts_before, silent_before = _banned("alert"), _banned("disconnect")
    try:
        info = parse_target(content.torrent).info
        swarm = eut.engine.watch(SwarmSpec(key=content.v1.hex(), infohash_v1=content.v1, infohash_v2=None,
                                           info=info, trackers=()))
        eut.engine.add_peer(swarm.key, (LIAR_IP, liar.port), Source.TRACKER)
        eut.engine.add_peer(swarm.key, (HONEST_IP, honest.port), Source.TRACKER)

        def settled(passed: bool) -> list[PieceSettled]:
            return [e for e in eut.of(PieceSettled) if e.passed is passed]

        def both_settled() -> bool:
            return bool(settled(False)) and bool(settled(True))

        await wait_for(both_settled, timeout=90)
        failed, passed = settled(False)[0], settled(True)[0]
        assert {c[0][0] for c in failed.contributions} == {LIAR_IP, HONEST_IP}  # no sole source: blames no one
        # H alone served the passed attempt; libtorrent sometimes posts no block_finished for a re-downloaded
        # block (seen 2 runs in 5), and then the pass is credited to nobody: never to L
        assert {c[0][0] for c in passed.contributions} <= {HONEST_IP}
        # smart-ban drops L with "peer banned" and no ban alert; the ban is recorded and then judged
        await wait_for(lambda: _banned("disconnect") > silent_before, timeout=60)
        assert _banned("alert") == alerts_before
        await wait_for(lambda: bool(eut.of(PeerLied)), timeout=60)  # judged once pieces in flight settled
        assert {e.peer[0] for e in eut.of(PeerLied)} == {LIAR_IP}
        assert (1, 0) in script.served["L"]
        assert all(rnd == 1 for rnd, _ in script.served["L"])
        assert eut.engine.uploaded_payload_bytes() == 0
    finally:
        await eut.engine.stop()
        await liar.stop()
        await honest.stop()
