"""A swarm's metadata arriving asks libtorrent's network thread for it once.

`torrent_handle.torrent_file()` and `info_hashes()` are synchronous round trips to libtorrent's network thread:
the event loop stops until that thread answers, which at 10,000 busy swarms took long enough for one alert
batch of metadata arrivals to hold the loop for seconds (BENCHMARKS.md, capacity under load, fifth pass). The
engine asked for both, then the swarm asked again; now the swarm takes what the engine fetched.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from tests.swarm.helpers import EngineUnderTest, wait_for
from tracker_watch.demo.swarm import LocalSwarm

ROUND_TRIPS = ("torrent_file", "info_hashes")


class CountingHandle:
    """The swarm's real libtorrent handle, counting the round trips asked of it (everything else passes)."""

    def __init__(self, handle: Any, counts: Counter[str]) -> None:
        self._handle = handle
        self._counts = counts

    def __getattr__(self, name: str) -> Any:
        if name in ROUND_TRIPS:
            self._counts[name] += 1
        return getattr(self._handle, name)


async def test_metadata_arrival_asks_libtorrent_once(eut: EngineUnderTest, local_swarm: LocalSwarm) -> None:
    swarm = eut.watch_magnet(local_swarm)
    counts: Counter[str] = Counter()
    real = swarm.handle
    swarm.handle = CountingHandle(real, counts)  # the engine finds the swarm by the alert's own handle
    feeding = asyncio.create_task(eut.keep_feeding(local_swarm, swarm.key))
    try:
        await wait_for(lambda: swarm.meta is not None, timeout=30)
    finally:
        feeding.cancel()
        swarm.handle = real  # the engine's stop hands it back to libtorrent
    assert eut.metadata
    assert eut.metadata[0][0] == swarm.key
    assert swarm.info_hash_v1 == local_swarm.content.v1
    assert swarm.pieces is not None
    assert {name: counts[name] for name in ROUND_TRIPS} == {"torrent_file": 1, "info_hashes": 1}
