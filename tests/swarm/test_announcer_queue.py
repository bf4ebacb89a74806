"""Many first announces to one slow tracker: waiting for a free connection is not a tracker failure.

aiohttp's `ClientTimeout(total=…)` and our own deadline around an announce both counted the time a request
spent queued for one of the client's 100 connections. Registering thousands of targets on one tracker that
answers in half a second queued them for seconds, so announces the tracker never saw "timed out", counted as
failures and backed off 60, 120, 240 s…: at 5,000 busy swarms on a loaded machine the monitor was still not
listed in every swarm after 16 minutes (BENCHMARKS.md, capacity under load).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from tests.swarm.helpers import wait_for
from tracker_watch.config import TrackerSettings
from tracker_watch.demo.tracker import LocalTracker
from tracker_watch.domain.addresses import LOOPBACK_NETWORKS, AddressPolicy
from tracker_watch.swarm.announcer import Announcer, AnnounceTarget

TARGETS = 600  # six waves of the client's 100 connections
REPLY_DELAY_S = 0.5  # each announce, as the tracker sees it, takes a quarter of the deadline
TIMEOUT_S = 2.0


class SlowTracker(LocalTracker):
    async def _http_announce(self, request: web.Request) -> web.Response:
        await asyncio.sleep(REPLY_DELAY_S)
        return await super()._http_announce(request)


@pytest.fixture
async def slow() -> AsyncIterator[LocalTracker]:
    t = SlowTracker(interval=3600)
    await t.start()
    yield t
    await t.stop()


async def test_queued_first_announces_do_not_time_out(slow: LocalTracker) -> None:
    a = Announcer(TrackerSettings(min_interval_s=600, max_interval_s=3600, timeout_s=TIMEOUT_S),
                  lambda key, peer, source, url: None, listen_port=lambda: 6881, peer_id=b"-TW0100-testtesttest",
                  local_ip="127.0.0.2", policy=AddressPolicy.from_settings(LOOPBACK_NETWORKS))
    await a.start()
    try:
        for i in range(TARGETS):
            a.track(AnnounceTarget(key=f"k{i}", info_hashes=(i.to_bytes(20, "big"),), trackers=(slow.url,)))
        await wait_for(lambda: a.announces + a.failures >= TARGETS, timeout=120)
        assert a.failures == 0
        assert a.announces == TARGETS
        assert len(slow.swarms) == TARGETS  # every swarm lists us after one announce each
    finally:
        await a.stop()
