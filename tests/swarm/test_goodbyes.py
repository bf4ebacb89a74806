"""Goodbyes (event=stopped announces) among the announces that go on: their order, their share of the turns,
which failed starts still get one, and what Prometheus sees of them."""

from __future__ import annotations

import socket

from prometheus_client import REGISTRY

from tests.swarm.goodbye_helpers import MuteTracker, announcer, listed, many_started, ours, started_once
from tests.swarm.helpers import wait_for
from tracker_watch.demo.tracker import LocalTracker
from tracker_watch.swarm.announcer import IN_FLIGHT, AnnounceTarget

MANY = IN_FLIGHT + 50


def announces(event: str, result: str) -> float:
    return REGISTRY.get_sample_value("tracker_watch_announces_total", {"event": event, "result": result}) or 0.0


async def test_a_swarm_tracked_again_while_its_goodbye_is_in_flight_starts_after_it() -> None:
    """A lease lost and regained while the tracker is slow to answer our stopped: had the new started gone
    out meanwhile, the tracker would take it first and the stopped after, and unlist the swarm we watch."""
    mute = MuteTracker("stopped")
    await mute.start()
    a = announcer()
    await a.start()
    try:
        target = await started_once(a, mute)
        a.untrack("k")
        await wait_for(lambda: mute.received == 1, timeout=30)  # the stopped is at the tracker, unanswered
        a.track(target)
        await wait_for(lambda: getattr(a.goodbyes, "waited", 0) == 1 or ours(mute, "started") == 2, timeout=30)
        mute.release.set()
        await wait_for(lambda: ours(mute, "started") == 2 and ours(mute, "stopped") == 1, timeout=30)
        assert [e for _, ip, port, e in mute.announces if (ip, port) == ("127.0.0.2", 6881)] == \
            ["started", "stopped", "started"]
        assert listed(mute) == 1
    finally:
        mute.release.set()
        await a.stop()
        await mute.stop()


async def test_goodbyes_leave_turns_for_the_swarms_still_watched() -> None:
    """Many goodbyes to a tracker that never answers them: while the node runs they hold a quarter of the
    turns, so a swarm still watched (here a new one, on another tracker) announces at once."""
    mute, other = MuteTracker("stopped"), LocalTracker(interval=3600)
    await mute.start()
    await other.start()
    a = announcer(timeout_s=600.0)  # a goodbye holds its turn until the tracker answers
    a.stop_deadline_s = 0.5
    await a.start()
    try:
        await many_started(a, mute, MANY)
        for i in range(MANY):
            a.untrack(f"k{i}")
        await wait_for(lambda: mute.received >= IN_FLIGHT // 4, timeout=30)
        a.track(AnnounceTarget(key="new", info_hashes=(b"\xff" * 20,), trackers=(other.url,)))
        await wait_for(lambda: ours(other, "started") == 1, timeout=30)
        assert mute.received == IN_FLIGHT // 4
    finally:
        await a.stop()
        mute.release.set()
        await mute.stop()
        await other.stop()


async def test_a_started_that_timed_out_still_gets_its_goodbye() -> None:
    """The tracker took our started and did not answer in time: it may list us all the same, so the swarm's
    end still says stopped. Counted as a failed started and a sent stopped."""
    mute = MuteTracker("started")
    await mute.start()
    a = announcer(timeout_s=0.5)
    await a.start()
    failed_before, stopped_before = announces("started", "failed"), announces("stopped", "ok")
    try:
        a.track(AnnounceTarget(key="k", info_hashes=(b"\x01" * 20,), trackers=(mute.url,)))
        await wait_for(lambda: a.failures == 1, timeout=30)
        a.untrack("k")
        await wait_for(lambda: ours(mute, "stopped") == 1, timeout=30)
        assert a.goodbyes.sent == 1
        assert announces("started", "failed") == failed_before + 1
        assert announces("stopped", "ok") == stopped_before + 1
    finally:
        mute.release.set()
        await a.stop()
        await mute.stop()


async def test_no_goodbye_to_a_udp_tracker_that_never_answered_the_connect_request() -> None:
    """Silent at the connect step, the tracker never saw the announce itself: nothing to take back."""
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    a = announcer(timeout_s=0.5)
    await a.start()
    try:
        a.track(AnnounceTarget(key="k", info_hashes=(b"\x01" * 20,),
                               trackers=(f"udp://127.0.0.1:{silent.getsockname()[1]}/announce",)))
        await wait_for(lambda: a.failures == 1, timeout=30)
        a.untrack("k")
        await a.stop()
        assert (a.goodbyes.sent, a.goodbyes.failed, a.goodbyes.dropped) == (0, 0, 0)
    finally:
        await a.stop()
        silent.close()
