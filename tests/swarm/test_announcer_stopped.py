"""event=stopped (BEP 3): a swarm we stop announcing gets a goodbye from every tracker it announced to.

Without one the tracker listed the monitor for its whole peer lifetime: other peers, and the node taking the
swarm over, kept dialling a dead address (a monitor stopped in one test was handed to the next as a peer).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import AsyncIterator

import pytest

from tests.swarm.goodbye_helpers import MuteTracker, announcer, listed, many_started, ours, started_once
from tests.swarm.helpers import wait_for
from tests.swarm.hostile import HostileTracker, redirect, reply_body, segmented
from tracker_watch.config import TrackerSettings
from tracker_watch.demo.tracker import LocalTracker
from tracker_watch.domain.addresses import AddressPolicy
from tracker_watch.swarm.announcer import IN_FLIGHT, Announcer, AnnounceTarget

MANY = IN_FLIGHT + 50  # more than are ever in flight at once: some wait in the queue


@pytest.fixture
async def tracker() -> AsyncIterator[LocalTracker]:
    t = LocalTracker(interval=3600)
    await t.start()
    yield t
    await t.stop()


async def test_untrack_says_stopped_over_http_and_udp(tracker: LocalTracker) -> None:
    a = announcer()
    await a.start()
    try:
        a.track(AnnounceTarget(key="k", info_hashes=(b"\x01" * 20, b"\x02" * 20), trackers=(tracker.url,
                                                                                           tracker.udp_url)))
        await wait_for(lambda: ours(tracker, "started") == 4, timeout=30)
        assert listed(tracker) == 2
        a.untrack("k")
        await wait_for(lambda: ours(tracker, "stopped") == 4, timeout=30)
        assert listed(tracker) == 0
        assert a.goodbyes.sent == 4
    finally:
        await a.stop()


async def test_a_tracker_the_target_no_longer_names_gets_a_goodbye_and_only_that_one(tracker: LocalTracker) -> None:
    other = LocalTracker(interval=3600)
    await other.start()
    a = announcer()
    await a.start()
    try:
        a.track(AnnounceTarget(key="k", info_hashes=(b"\x01" * 20,), trackers=(tracker.url, other.url)))
        await wait_for(lambda: ours(tracker, "started") == ours(other, "started") == 1, timeout=30)
        a.track(AnnounceTarget(key="k", info_hashes=(b"\x01" * 20,), trackers=(tracker.url,)))
        await wait_for(lambda: listed(other) == 0, timeout=30)
        assert a.goodbyes.sent == 1
        assert ours(tracker, "stopped") == 0
        assert listed(tracker) == 1
    finally:
        await a.stop()
        await other.stop()


async def test_a_swarm_tracked_again_before_its_goodbye_left_keeps_its_listing(tracker: LocalTracker) -> None:
    """A lease lost and regained at once: the queued goodbye is not sent (it would unlist the swarm we watch
    again), and the next untrack still says it."""
    a = announcer()
    await a.start()
    try:
        target = await started_once(a, tracker)
        a.untrack("k")
        a.track(target)  # before the goodbye's worker ran
        await wait_for(lambda: a.goodbyes.skipped == 1, timeout=30)
        assert ours(tracker, "stopped") == 0
        assert listed(tracker) == 1
        a.untrack("k")
        await wait_for(lambda: listed(tracker) == 0, timeout=30)
    finally:
        await a.stop()


async def test_no_goodbye_where_no_started_announce_went_out() -> None:
    a = announcer(timeout_s=1.0)
    await a.start()
    try:
        a.track(AnnounceTarget(key="k", info_hashes=(b"\x01" * 20,), trackers=("http://127.0.0.1:9/announce",)))
        await wait_for(lambda: a.failures >= 1, timeout=30)
        a.untrack("k")
        await a.stop()
        assert (a.goodbyes.sent, a.goodbyes.failed, a.goodbyes.dropped) == (0, 0, 0)
    finally:
        await a.stop()


async def test_stopping_many_swarms_says_stopped_to_each(tracker: LocalTracker) -> None:
    a = announcer()
    a.stop_deadline_s = 120.0  # a bound only: this machine may be slow, the count is what is asserted
    await a.start()
    await many_started(a, tracker, MANY)
    assert listed(tracker) == MANY
    await a.stop()
    assert listed(tracker) == 0
    assert (a.goodbyes.sent, a.goodbyes.dropped) == (MANY, 0)


async def test_stop_drops_the_goodbyes_its_deadline_has_no_room_for() -> None:
    """A tracker that never answers a stopped announce must not hold the node's stop: the deadline passes,
    what was in flight and what still waited are dropped and counted, and no more than IN_FLIGHT went out."""
    mute = MuteTracker("stopped")
    await mute.start()
    a = announcer(timeout_s=600.0)  # only the stop deadline can end them
    a.stop_deadline_s = 0.5
    await a.start()
    try:
        await many_started(a, mute, MANY)
        await a.stop()
        assert (a.goodbyes.sent, a.goodbyes.failed, a.goodbyes.dropped) == (0, 0, MANY)
        assert mute.received <= IN_FLIGHT
    finally:
        await a.stop()
        mute.release.set()
        await mute.stop()


async def test_a_goodbye_obeys_the_address_policy_like_any_announce() -> None:
    """A tracker answering event=stopped with a redirect to an address the policy forbids (127.0.0.2 here:
    only the tracker's own address is allowed) is not followed: the goodbye fails, nothing else is reached. It names
    us as the started announce did."""
    hostile = await HostileTracker().start()
    hostile.script = lambda path: (redirect(f"http://127.0.0.2:{hostile.port}/x") if "event=stopped" in path
                                   else segmented(reply_body([])))
    a = Announcer(TrackerSettings(min_interval_s=600, max_interval_s=3600, timeout_s=5),
                  lambda key, peer, source, url: None, listen_port=lambda: 6881, peer_id=b"-TW0100-testtesttest",
                  policy=AddressPolicy.from_settings(["127.0.0.1/32"]))
    await a.start()
    try:
        a.track(AnnounceTarget(key="k", info_hashes=(b"\x01" * 20,), trackers=(hostile.url,)))
        await wait_for(lambda: a.announces == 1, timeout=30)
        a.untrack("k")
        await wait_for(lambda: a.goodbyes.failed == 1, timeout=30)
        assert [p.split("?")[0] for p in hostile.paths] == ["/announce", "/announce"]
        started, stopped = (urllib.parse.parse_qs(p.split("?", 1)[1]) for p in hostile.paths)
        assert stopped["event"] == ["stopped"]
        for same in ("info_hash", "peer_id", "key", "port"):  # the identity the tracker lists us under
            assert stopped[same] == started[same], same
    finally:
        await a.stop()
        await hostile.stop()
