"""Identity on every row: whatever the registration form, each verified row names the peer's client, its peer
id and our address, and a handshake-or-better row for that peer precedes it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.conftest import SettingsFactory
from tests.swarm.helpers import EngineUnderTest, wait_for
from tracker_watch.demo.run import PROBE_IP
from tracker_watch.demo.swarm import LocalSwarm
from tracker_watch.domain.evidence import Grade, Observation
from tracker_watch.domain.peers import PieceSettled
from tracker_watch.evidence.collector import Collector, TargetRef


@pytest.fixture
async def eut(make_settings: SettingsFactory) -> AsyncIterator[EngineUnderTest]:
    e = EngineUnderTest(make_settings())
    await e.engine.start()
    yield e
    await e.engine.stop()


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
