"""Trackers and an announcer for the event=stopped tests (test_announcer_stopped.py, test_goodbyes.py)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from tests.swarm.helpers import wait_for
from tracker_watch.config import TrackerSettings
from tracker_watch.demo.tracker import LocalTracker
from tracker_watch.domain.addresses import LOOPBACK_NETWORKS, AddressPolicy
from tracker_watch.swarm.announcer import Announcer, AnnounceTarget

US = ("127.0.0.2", 6881)


class MuteTracker(LocalTracker):
    """Receives the announces of one event and answers none of them until `release` is set; serves the rest."""

    def __init__(self, event: str) -> None:
        super().__init__(interval=3600)
        self.event = event
        self.received = 0
        self.release = asyncio.Event()

    async def _http_announce(self, request: web.Request) -> web.Response:
        if request.query.get("event") == self.event:
            self.received += 1
            await self.release.wait()
        return await super()._http_announce(request)


def announcer(timeout_s: float = 3.0) -> Announcer:
    return Announcer(TrackerSettings(min_interval_s=600, max_interval_s=3600, timeout_s=timeout_s),
                     lambda key, peer, source, url: None, listen_port=lambda: US[1],
                     peer_id=b"-TW0100-testtesttest", local_ip=US[0],
                     policy=AddressPolicy.from_settings(LOOPBACK_NETWORKS))


def ours(t: LocalTracker, event: str) -> int:
    return sum(1 for _, ip, port, e in t.announces if (ip, port) == US and e == event)


def listed(t: LocalTracker) -> int:
    return sum(1 for s in t.swarms.values() if US in s.peers)


async def started_once(a: Announcer, t: LocalTracker) -> AnnounceTarget:
    """Track swarm "k" (one infohash, tracker `t`) until its started announce reached `t`; the target."""
    target = AnnounceTarget(key="k", info_hashes=(b"\x01" * 20,), trackers=(t.url,))
    a.track(target)
    await wait_for(lambda: ours(t, "started") == 1, timeout=30)
    return target


async def many_started(a: Announcer, t: LocalTracker, n: int) -> None:
    """Track n swarms "k0" … on tracker `t` until each has announced."""
    for i in range(n):
        a.track(AnnounceTarget(key=f"k{i}", info_hashes=(i.to_bytes(20, "big"),), trackers=(t.url,)))
    await wait_for(lambda: a.announces == n, timeout=120)
