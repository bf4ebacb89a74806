"""event=stopped at shutdown: one announcer identity stopping N swarms announced to a local tracker.

`python -m bench.stop_announces 10000`: tracks N swarms (one tracker each), waits for every started announce,
then times Announcer.stop() twice: with a zero deadline (the goodbyes dropped at once: the baseline, as before
goodbyes existed) and with the default STOP_DEADLINE_S. Prints the goodbyes sent/failed/dropped and how many
swarms the tracker still lists us in. Tracker and announcer share this process's event loop.
"""

from __future__ import annotations

import asyncio
import sys
import time

from tracker_watch.config import TrackerSettings
from tracker_watch.demo.tracker import LocalTracker
from tracker_watch.domain.addresses import LOOPBACK_NETWORKS, AddressPolicy
from tracker_watch.swarm.announcer import Announcer, AnnounceTarget
from tracker_watch.swarm.goodbyes import STOP_DEADLINE_S


async def run(n: int, deadline_s: float) -> None:
    t = LocalTracker(interval=3600)
    await t.start()
    a = Announcer(TrackerSettings(min_interval_s=600, max_interval_s=3600, timeout_s=5), lambda *_: None,
                  listen_port=lambda: 6881, peer_id=b"-TW0100-benchbenchbe", local_ip="127.0.0.2",
                  policy=AddressPolicy.from_settings(LOOPBACK_NETWORKS))
    a.stop_deadline_s = deadline_s
    await a.start()
    for i in range(n):
        a.track(AnnounceTarget(key=f"k{i}", info_hashes=(i.to_bytes(20, "big"),), trackers=(t.url,)))
    while a.announces + a.failures < n:  # noqa: ASYNC110 (counters, no event to wait on)
        await asyncio.sleep(0.2)
    t0 = time.monotonic()
    await a.stop()
    took = time.monotonic() - t0
    still = sum(1 for s in t.swarms.values() if s.peers)
    g = a.goodbyes
    print(f"swarms={n} deadline_s={deadline_s} stop_s={took:.2f} sent={g.sent} failed={g.failed} "
          f"dropped={g.dropped} still_listed={still}")
    await t.stop()


async def main(n: int) -> None:
    await run(n, 0.0)
    await run(n, STOP_DEADLINE_S)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000))
