"""The address policy in the engine: peers from trackers, the DHT, PEX and incoming connections are dialled
and recorded only when the policy allows them, and libtorrent's own IP filter says the same."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import SimpleNamespace

import libtorrent as lt
import pytest
from prometheus_client import REGISTRY

from tests.conftest import SettingsFactory
from tests.swarm.helpers import EngineUnderTest, wait_for
from tracker_watch.demo.swarm import LocalSwarm
from tracker_watch.domain.evidence import Source
from tracker_watch.domain.peers import PeerListed, PeerSnapshot

DENIED_SEEDER = "127.0.0.13"  # the third seeder: a lab that denies one of its own addresses
FORBIDDEN = [("10.0.0.1", 6881), ("169.254.169.254", 80), ("0.0.0.0", 1), ("224.0.0.1", 2), ("192.168.1.1", 3),
             ("100.64.0.1", 4), ("240.0.0.1", 5), ("::ffff:10.0.0.2", 6), ("fe80::1", 7), (DENIED_SEEDER, 9)]


@pytest.fixture
async def eut(make_settings: SettingsFactory) -> AsyncIterator[EngineUnderTest]:
    e = EngineUnderTest(make_settings(swarm={"allowed_networks": ["127.0.0.0/8"],
                                             "denied_networks": [f"{DENIED_SEEDER}/32"]}))
    await e.engine.start()
    yield e
    await e.engine.stop()


def refused(source: str) -> float:
    return REGISTRY.get_sample_value("tracker_watch_peers_refused_total", {"source": source}) or 0.0


async def test_only_allowed_addresses_are_dialled_and_recorded(eut: EngineUnderTest, local_swarm: LocalSwarm) -> None:
    assert local_swarm.peers[2].ip == DENIED_SEEDER
    swarm = eut.watch_magnet(local_swarm, with_info=True)
    before = {s: refused(s) for s in ("tracker", "dht", "pex")}
    for peer in FORBIDDEN:
        eut.engine.add_peer(swarm.key, peer, Source.TRACKER, local_swarm.tracker.url)
    dht_peers = [*FORBIDDEN, (local_swarm.peers[0].ip, local_swarm.peers[0].port)]
    eut.engine._dht_reply(SimpleNamespace(info_hash=lt.sha1_hash(local_swarm.content.v1 or b""),
                                          peers=lambda: dht_peers))
    swarm.on_peer_disconnected(SimpleNamespace(endpoint=("10.9.9.9", 6881), op=lt.operation_t.connect))  # PEX
    eut.feed_seeders(local_swarm, swarm.key)
    # the denied seeder dials us: libtorrent's IP filter turns it away
    denied = local_swarm.peers[2]
    denied.handle.connect_peer(("127.0.0.2", eut.engine.listen_port()))
    allowed = {(s.ip, s.port) for s in local_swarm.peers[:2]}
    await wait_for(lambda: {e.peer for e in eut.of(PeerSnapshot)} >= allowed, timeout=30)

    named = {e.peer[0] for e in eut.of(PeerListed)} | {e.peer[0] for e in eut.of(PeerSnapshot)}
    assert named <= {s.ip for s in local_swarm.peers[:2]}
    assert swarm.listed == allowed
    assert refused("tracker") - before["tracker"] == len(FORBIDDEN) + 1  # and the denied seeder, fed as a peer
    assert refused("dht") - before["dht"] == len(FORBIDDEN)


async def test_libtorrent_ip_filter_follows_the_policy(eut: EngineUnderTest) -> None:
    ipf = eut.engine.session.get_ip_filter()
    for ip in ("10.0.0.1", "169.254.169.254", "0.0.0.0", "255.255.255.255", "224.0.0.1", "100.64.0.1",
               "172.16.0.1", "192.168.0.1", DENIED_SEEDER, "fe80::1", "fc00::1", "::ffff:127.0.0.1"):
        assert ipf.access(ip) == 1, ip
    for ip in ("127.0.0.11", "127.0.0.2", "8.8.8.8", "2a00:1450::1"):
        assert ipf.access(ip) == 0, ip


def test_our_own_addresses_are_blocked_unless_a_lab_allows_them() -> None:
    from tracker_watch.domain.addresses import STRICT, AddressPolicy
    from tracker_watch.swarm.settings import ip_filter

    assert ip_filter(STRICT, {"203.0.114.5"}).access("203.0.114.5") == 1  # a lister naming us: never dialled
    assert ip_filter(STRICT, {"203.0.114.5"}).access("203.0.114.6") == 0
    assert ip_filter(AddressPolicy.from_settings(["::1/128"]), {"::1"}).access("::1") == 0


async def test_our_own_listen_socket_named_by_the_dht_is_never_a_peer(eut: EngineUnderTest,
                                                                       local_swarm: LocalSwarm) -> None:
    """A lab allows its own addresses (127.0.0.0/8 here), so only the endpoint check keeps us from ourselves:
    a DHT reply naming our listen socket reached the swarm without the check the engine makes for trackers."""
    swarm = eut.watch_magnet(local_swarm, with_info=True)
    # the session's listener and the verifier's
    await wait_for(lambda: {ip for ip, _ in eut.engine.listen_endpoints} >= {"127.0.0.2", "127.0.0.3"})
    own = list(eut.engine.listen_endpoints)
    eut.engine._dht_reply(SimpleNamespace(info_hash=lt.sha1_hash(local_swarm.content.v1 or b""), peers=lambda: own))
    assert not swarm.listed & set(own)
    assert not {e.peer for e in eut.of(PeerListed)} & set(own)


async def test_every_address_the_node_uses_is_its_own(make_settings: SettingsFactory) -> None:
    """The verifier listens and dials from verify.probe_interface (127.0.0.3 here): that address was not in
    own_ips, so a tracker listing it under another port was a peer to dial under the default policy."""
    e = EngineUnderTest(make_settings())
    await e.engine.start()
    try:
        assert {"127.0.0.2", "127.0.0.3"} <= e.engine.own_ips
    finally:
        await e.engine.stop()


def test_a_global_probe_address_is_never_a_peer_under_the_default_policy(make_settings: SettingsFactory) -> None:
    from tracker_watch.swarm.announcer import announcers_for
    from tracker_watch.swarm.engine import SwarmEngine

    probe, session = "203.0.114.7", "203.0.114.8"  # global unicast: strict allows them but for being ours
    engine = SwarmEngine(make_settings(swarm={"allowed_networks": [], "outgoing_interfaces": [],
                                              "listen_interfaces": [f"{session}:6881"]},
                                       verify={"probe_interface": probe}), lambda _: None)
    assert not engine.policy.allows(probe, engine.own_ips)
    assert not engine.policy.allows(session, engine.own_ips)
    assert engine.policy.allows("203.0.114.9", engine.own_ips)
    for member in announcers_for(engine.settings, engine).members:
        assert not member.allows(probe)
