"""Our tracker client against a hostile tracker on loopback: segmented, chunked and large replies, junk
datagrams, redirects, and peer lists full of addresses the policy forbids."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest

from tests.swarm.hostile import HostileTracker, chunked, redirect, reply_body, segmented
from tracker_watch.config import TrackerSettings
from tracker_watch.domain import tracker_proto as tp
from tracker_watch.domain.addresses import AddressPolicy
from tracker_watch.domain.evidence import Source
from tracker_watch.domain.peers import Endpoint
from tracker_watch.swarm.announcer import Announcer, AnnounceTarget
from tracker_watch.swarm.tracker_http import MAX_REPLY_BYTES

IH = b"\x42" * 20
# The tracker's own address is allowed (as a lab allows its tracker); nothing else on loopback is.
TRACKER_ONLY = AddressPolicy.from_settings(["127.0.0.1/32"])
FORBIDDEN = [("0.0.0.0", 1), ("255.255.255.255", 2), ("224.0.0.1", 3), ("10.0.0.1", 4), ("172.16.0.1", 5),
             ("192.168.1.1", 6), ("169.254.169.254", 80), ("100.64.0.1", 8), ("127.0.0.9", 5432), ("240.0.0.1", 9)]
GLOBAL = [("8.8.8.8", 6881), ("1.1.1.1", 51413)]  # recorded, never dialled: add_peer is the test's list
Found = list[tuple[str, Endpoint, Source, str]]
Make = Callable[..., tuple[Announcer, Found]]


@pytest.fixture
async def make() -> AsyncIterator[Make]:
    made: list[Announcer] = []

    def build(policy: AddressPolicy = TRACKER_ONLY, numwant: int = 200,
              also: Callable[[], None] = lambda: None) -> tuple[Announcer, Found]:
        found: Found = []

        def add_peer(key: str, peer: Endpoint, source: Source, url: str) -> None:
            found.append((key, peer, source, url))
            also()

        a = Announcer(TrackerSettings(min_interval_s=1, max_interval_s=2, timeout_s=5, numwant=numwant), add_peer,
                      listen_port=lambda: 6881, peer_id=b"-TW0100-testtesttest", policy=policy)
        made.append(a)
        return a, found

    yield build
    for a in made:
        await a.stop()


async def started(pair: tuple[Announcer, Found]) -> tuple[Announcer, Found]:
    await pair[0].start()
    return pair


@pytest.fixture
async def hostile() -> AsyncIterator[HostileTracker]:
    t = await HostileTracker().start()
    yield t
    await t.stop()


def _req(numwant: int = 200) -> tp.AnnounceRequest:
    return tp.AnnounceRequest(info_hash=IH, peer_id=b"-TW0100-testtesttest", port=6881, left=1, numwant=numwant,
                              key=1, event="started")


PEERS = [(f"8.8.{i // 250}.{i % 250 + 1}", 6881) for i in range(150)]


@pytest.mark.parametrize("shape", [
    pytest.param(lambda: segmented(reply_body(PEERS, pad=11_000)), id="11KB-in-1448-byte-segments"),
    pytest.param(lambda: segmented(reply_body(PEERS, pad=60_000), size=31_000), id="60KB-in-two-parts"),
    pytest.param(lambda: chunked(reply_body(PEERS, pad=20_000)), id="chunked"),
    pytest.param(lambda: _unframed(reply_body(PEERS, pad=9000)), id="no-length-until-close"),
])
async def test_whole_replies_are_read_however_they_arrive(
        shape: Callable[[], list[bytes]], hostile: HostileTracker, make: Make) -> None:
    hostile.script = lambda path: shape()
    a, _ = await started(make())
    reply = await a.announce(hostile.url, _req())
    assert reply.peers == tuple(PEERS)


def _unframed(body: bytes) -> list[bytes]:
    data = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + body
    return [data[i:i + 1448] for i in range(0, len(data), 1448)]


async def test_a_reply_over_the_limit_is_refused(hostile: HostileTracker,
                                                 make: Make) -> None:
    hostile.script = lambda path: chunked(reply_body([], pad=MAX_REPLY_BYTES + 10), size=256 * 1024)
    a, _ = await started(make())
    with pytest.raises(tp.TrackerError, match="larger than 2 MiB"):
        await a.announce(hostile.url, _req())


async def test_forbidden_addresses_are_neither_passed_on_nor_dialled(
        hostile: HostileTracker, make: Make) -> None:
    hostile.script = lambda path: segmented(reply_body(FORBIDDEN + GLOBAL))
    hostile.udp_peers = FORBIDDEN + GLOBAL
    a, found = await started(make())
    a.track(AnnounceTarget(key="k", info_hashes=(IH,), trackers=(hostile.url, hostile.udp_url)))
    await _until(lambda: {f[3] for f in found} == {hostile.url, hostile.udp_url})
    assert {f[1] for f in found} == set(GLOBAL)


async def test_stray_datagrams_are_ignored(hostile: HostileTracker,
                                           make: Make) -> None:
    hostile.udp_peers, hostile.udp_junk = GLOBAL, 6
    a, _ = await started(make())
    reply = await a.announce(hostile.udp_url, _req())
    assert reply.peers == tuple(GLOBAL)


async def test_a_2_mib_list_is_capped_and_handed_over_in_slices(
        hostile: HostileTracker, make: Make) -> None:
    flood = [(f"8.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255 or 1}", 6881) for i in range(MAX_REPLY_BYTES // 6 - 10)]
    reply = segmented(reply_body(flood), size=64 * 1024)  # built once: the tracker shares our loop
    hostile.script = lambda path: reply
    ticks = [0]
    seen_at: list[int] = []
    a, found = await started(make(numwant=1000, also=lambda: seen_at.append(ticks[0])))

    async def ticker() -> None:  # runs whenever the loop is free: counts the announcer's yields
        while True:
            ticks[0] += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    try:
        a.track(AnnounceTarget(key="k", info_hashes=(IH,), trackers=(hostile.url,)))
        await _until(lambda: len(found) >= 1000)
    finally:
        task.cancel()
    assert len(found) == 1000  # numwant: the rest of the 350,000 entries is counted, never parsed
    assert len(set(seen_at)) >= 5  # the loop ran between slices of 200


@pytest.mark.parametrize("location", [
    "http://10.0.0.1/announce", "http://169.254.169.254/latest/meta-data", "http://127.0.0.2:{port}/announce",
    "udp://127.0.0.1:{port}/announce", "http://[::1]:{port}/announce",
])
async def test_redirects_are_followed_only_under_the_policy(
        location: str, hostile: HostileTracker, make: Make) -> None:
    hostile.script = lambda path: redirect(location.format(port=hostile.port)) if path.startswith("/announce") \
        else segmented(reply_body(GLOBAL))
    a, _ = await started(make())
    with pytest.raises((tp.TrackerError, aiohttp.ClientError, OSError)):
        await a.announce(hostile.url, _req())
    assert len(hostile.paths) == 1  # never reached anything but the first hop


async def test_a_redirect_the_policy_allows_is_followed_a_few_times(
        hostile: HostileTracker, make: Make) -> None:
    hops = iter(["/b", "/c", "/d"])
    hostile.script = lambda path: redirect(f"http://127.0.0.1:{hostile.port}{next(hops)}") \
        if path.startswith(("/announce", "/b")) else segmented(reply_body(GLOBAL))
    a, _ = await started(make())
    assert (await a.announce(hostile.url, _req())).peers == tuple(GLOBAL)
    hostile.paths.clear()
    hops = iter(["/b", "/c", "/d", "/e"])
    hostile.script = lambda path: redirect(f"http://127.0.0.1:{hostile.port}{next(hops)}")
    with pytest.raises(tp.TrackerError, match="redirects"):
        await a.announce(hostile.url, _req())


async def test_trackers_on_forbidden_hosts_are_refused(make: Make) -> None:
    a, _ = await started(make(policy=AddressPolicy()))
    for url in ("http://127.0.0.1:9/announce", "udp://127.0.0.1:9", "http://[::1]:9/announce",
                "http://localhost:9/announce", "udp://localhost:9"):
        with pytest.raises((tp.TrackerError, aiohttp.ClientError, OSError), match="policy"):
            await a.announce(url, _req())
    urls = ("http://10.0.0.1/announce", "udp://t.example", "http://u:pw@8.8.8.8/announce",
            *(f"http://t{i}.example/announce" for i in range(80)))
    assert a._usable("k", urls) == ("http://8.8.8.8/announce", *(f"http://t{i}.example/announce" for i in range(49)))


async def _until(predicate: Callable[[], bool]) -> None:
    from tests.helpers import wait_for

    await wait_for(predicate, timeout=20)
