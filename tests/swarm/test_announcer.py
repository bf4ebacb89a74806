"""Our tracker client against the local tracker, over HTTP and UDP."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.swarm.helpers import wait_for
from tracker_watch.config import TrackerSettings
from tracker_watch.demo.tracker import LocalTracker
from tracker_watch.domain import tracker_proto as tp
from tracker_watch.domain.addresses import LOOPBACK_NETWORKS, AddressPolicy
from tracker_watch.domain.evidence import Source
from tracker_watch.domain.peers import Endpoint
from tracker_watch.swarm.announcer import PEERS_PER_SLICE, Announcer, AnnounceTarget

IH = b"\x42" * 20
LOOPBACK = AddressPolicy.from_settings(LOOPBACK_NETWORKS)
Found = list[tuple[str, Endpoint, Source, str]]
AnnouncerAndFound = tuple[Announcer, Found]


@pytest.fixture
async def tracker() -> AsyncIterator[LocalTracker]:
    t = LocalTracker(interval=1)
    await t.start()
    t.record(IH, "127.0.0.11", 7001, "started")
    t.record(IH, "::1", 7002, "started")
    yield t
    await t.stop()


@pytest.fixture
async def announcer() -> AsyncIterator[AnnouncerAndFound]:
    found: Found = []
    a = Announcer(TrackerSettings(min_interval_s=1, max_interval_s=2, timeout_s=3),
                  lambda key, peer, source, url: found.append((key, peer, source, url)),
                  listen_port=lambda: 6881, peer_id=b"-TW0100-testtesttest", local_ip="127.0.0.2",
                  policy=LOOPBACK)
    await a.start()
    yield a, found
    await a.stop()


def _req() -> tp.AnnounceRequest:
    return tp.AnnounceRequest(info_hash=IH, peer_id=b"-TW0100-testtesttest", port=6881, left=1, numwant=50, key=1,
                              event="started")


async def test_http_announce_lists_peers_and_registers_us(tracker: LocalTracker,
                                                          announcer: AnnouncerAndFound) -> None:
    a, _ = announcer
    reply = await a.announce(tracker.url, _req())
    assert set(reply.peers) == {("127.0.0.11", 7001), ("::1", 7002)}
    assert (IH, "127.0.0.2", 6881, "started") in tracker.announces  # bound to our outgoing address


async def test_udp_announce(tracker: LocalTracker, announcer: AnnouncerAndFound) -> None:
    a, _ = announcer
    reply = await a.announce(tracker.udp_url, _req())
    assert reply.peers == (("127.0.0.11", 7001),)  # an IPv4 announce gets IPv4 peers (BEP 15)
    assert reply.interval == 1


async def test_tracking_feeds_the_engine_with_the_tracker_url(
        tracker: LocalTracker, announcer: AnnouncerAndFound) -> None:
    a, found = announcer
    a.track(AnnounceTarget(key="k", info_hashes=(IH,), trackers=(tracker.url, tracker.udp_url)))
    await wait_for(lambda: {f[3] for f in found} == {tracker.url, tracker.udp_url}, timeout=10)
    assert ("k", ("127.0.0.11", 7001), Source.TRACKER, tracker.udp_url) in found
    a.untrack("k")


async def test_dead_tracker_is_an_error_not_a_crash(announcer: AnnouncerAndFound) -> None:
    a, _ = announcer
    with pytest.raises(aiohttp.ClientConnectorError, match=r"127\.0\.0\.1:9"):
        await a.announce("http://127.0.0.1:9/announce", _req())


async def test_dual_stack_announces_leave_from_the_trackers_family() -> None:
    """With our addresses ["127.0.0.2", "::1"], an HTTP and a UDP tracker on [::1] are reached too (the HTTP
    client used to bind to the first address whatever the tracker's family, so an IPv6 tracker failed)."""
    v4, v6 = LocalTracker(interval=1), LocalTracker(host="::1", interval=1)
    await v4.start()
    await v6.start()
    found: Found = []
    a = Announcer(TrackerSettings(min_interval_s=1, max_interval_s=2, timeout_s=3),
                  lambda key, peer, source, url: found.append((key, peer, source, url)),
                  listen_port=lambda: 6881, peer_id=b"-TW0100-testtesttest", local_ips=["127.0.0.2", "::1"],
                  policy=LOOPBACK)
    await a.start()
    try:
        urls = (v4.url, f"http://[::1]:{v6.port}/announce", f"udp://[::1]:{v6.port}/announce")
        for url in urls:
            await a.announce(url, _req())
        assert (IH, "127.0.0.2", 6881, "started") in v4.announces
        assert sum(1 for ih, ip, port, _ in v6.announces if (ih, ip, port) == (IH, "::1", 6881)) == 2
    finally:
        await a.stop()
        await v4.stop()
        await v6.stop()


async def test_a_slow_hand_over_of_listed_peers_yields_to_the_event_loop() -> None:
    """Each listed peer handed to the engine costs a call into libtorrent, which at 10,000 busy swarms waits
    for its network thread. Here each hand-over is made 1 ms slower: the loop runs again every pacing.SLICE_S,
    not only every PEERS_PER_SLICE peers (a reply of 150 went in one turn)."""
    t = LocalTracker(interval=3600)
    await t.start()
    for i in range(150):
        t.record(IH, f"127.0.1.{i + 1}", 7000, "started")
    handed: list[int] = []

    def slow_add(key: str, peer: Endpoint, source: Source, url: str) -> None:
        handed.append(1)
        until = time.monotonic() + 0.001
        while time.monotonic() < until:
            pass

    a = Announcer(TrackerSettings(min_interval_s=600, max_interval_s=3600, timeout_s=3), slow_add,
                  listen_port=lambda: 6881, peer_id=b"-TW0100-testtesttest", local_ip="127.0.0.2", policy=LOOPBACK)
    seen: list[int] = []

    async def ticker() -> None:
        while True:
            seen.append(len(handed))
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await a.start()
    try:
        a.track(AnnounceTarget(key="k", info_hashes=(IH,), trackers=(t.url,)))
        await wait_for(lambda: len(handed) == 150, timeout=30)
    finally:
        task.cancel()
        await a.stop()
        await t.stop()
    assert max(later - earlier for earlier, later in itertools.pairwise(seen)) <= PEERS_PER_SLICE // 4
