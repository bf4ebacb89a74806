"""Identity on every row: whatever the registration form, each verified row names the peer's client, its peer
id and our address, and a handshake-or-better row for that peer precedes it."""

from __future__ import annotations

import asyncio

import pytest

from tests.swarm.helpers import EngineUnderTest, wait_for
from tracker_watch.demo.run import PROBE_IP
from tracker_watch.demo.swarm import LocalSwarm
from tracker_watch.domain.evidence import Grade, Observation
from tracker_watch.domain.peers import PieceSettled
from tracker_watch.evidence.collector import Collector, TargetRef


@pytest.mark.parametrize("with_info", [True, False], ids=["torrent", "magnet"])
async def test_every_verified_row_names_client_peer_id_and_our_address(
        eut: EngineUnderTest, local_swarm: LocalSwarm, with_info: bool) -> None:
    swarm = eut.watch_magnet(local_swarm, with_info=with_info)  # with_info: registered by .torrent
    feeding = asyncio.create_task(eut.keep_feeding(local_swarm, swarm.key))
    seeders = {(s.ip, s.port) for s in local_swarm.peers}
    try:
        await wait_for(lambda: {c[0] for e in eut.of(PieceSettled) if e.passed for c in e.contributions} >= seeders,
                       timeout=60)
    finally:
        feeding.cancel()
    rows: list[Observation] = []
    collector = Collector("n1", "tw/test", rows.append)
    collector.set_targets(swarm.key, [TargetRef(1, local_swarm.content.v1, local_swarm.content.v2)])
    for event in list(eut.events):
        collector.handle(event)
    verified = [r for r in rows if r.grade is Grade.VERIFIED]
    assert {(r.ip, r.port) for r in verified} >= seeders
    for r in verified:
        assert "libtorrent" in (r.client or ""), r
        assert (r.peer_id or b"").startswith(b"-LT"), r
        assert r.our_ip in ("127.0.0.2", PROBE_IP), r  # verified rows come from the verifier's own connection
        assert r.our_port is not None, r
        before = rows[:rows.index(r)]
        assert [b for b in before if (b.ip, b.port) == (r.ip, r.port) and b.grade in (Grade.HANDSHAKE,
                                                                                       Grade.ADVERTISED)], r


class _CountedReads:
    """The real handle, counting `get_peer_info` (a synchronous round trip to libtorrent's network thread)."""

    def __init__(self, handle: object) -> None:
        self._handle = handle
        self.reads = 0

    def get_peer_info(self) -> object:
        self.reads += 1
        return self._handle.get_peer_info()  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        return getattr(self._handle, name)


async def test_pieces_ending_in_one_batch_of_alerts_read_the_peers_once(eut: EngineUnderTest,
                                                                        local_swarm: LocalSwarm) -> None:
    swarm = eut.watch_magnet(local_swarm, with_info=True)
    handle = swarm.handle
    counted = _CountedReads(handle)
    swarm.handle = counted
    try:
        for piece in range(5):  # as the engine routes one batch of alerts: no await in between
            swarm.on_piece_finished(piece)
        assert counted.reads == 0  # not one round trip per piece, on the loop, while the batch is handled
        await wait_for(lambda: counted.reads > 0, timeout=10)
        await asyncio.sleep(0)
        assert counted.reads == 1  # one sample for the batch, before the pieces settle
    finally:
        swarm.handle = handle
