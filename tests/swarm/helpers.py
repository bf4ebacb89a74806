"""Helpers for tests that run a real swarm engine next to a LocalSwarm."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.helpers import wait_for
from tracker_watch.config import Settings
from tracker_watch.demo.swarm import LocalSwarm
from tracker_watch.domain.evidence import Source
from tracker_watch.domain.peers import PeerEvent
from tracker_watch.swarm.engine import SwarmEngine
from tracker_watch.swarm.swarm import Swarm, SwarmSpec

__all__ = ["EngineUnderTest", "wait_for"]


class EngineUnderTest:
    def __init__(self, settings: Settings) -> None:
        self.events: list[PeerEvent] = []
        self.metadata: list[tuple[str, bytes]] = []
        self.engine = SwarmEngine(settings, self.events.append,
                                  on_metadata=lambda s, info, meta: self.metadata.append((s.key, info)))

    def watch_magnet(self, swarm: LocalSwarm, with_info: bool = False) -> Swarm:
        c = swarm.content
        info = None
        if with_info:
            from tracker_watch.domain.targets import parse_target

            info = parse_target(c.torrent).info
        key = (c.v1 or c.v2 or b"").hex()
        return self.engine.watch(SwarmSpec(key=key, infohash_v1=c.v1, infohash_v2=c.v2, info=info, trackers=()))

    def feed_seeders(self, swarm: LocalSwarm, key: str) -> None:
        for s in swarm.peers:
            self.engine.add_peer(key, (s.ip, s.port), Source.TRACKER, swarm.tracker.url)

    async def keep_feeding(self, swarm: LocalSwarm, key: str, every: float = 3.0) -> None:
        """Hand the seeders over again and again, as the tracker client does at every announce."""
        while True:
            self.feed_seeders(swarm, key)
            await asyncio.sleep(every)

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]
