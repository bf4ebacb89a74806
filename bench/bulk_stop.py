"""Stopping N swarms one by one, as the watchlist does on a fence, a drain or a lost lease (issue 14).

A real SwarmEngine (libtorrent session, probe-mode verifier) and Collector with N magnet swarms; each swarm has
`--peers` peers known to the collector and offered to the verifier as candidates. Then every swarm is stopped the
way `Watchlist._stop` does it — `Collector.set_targets(key, [])`, `SwarmEngine.unwatch(key)` (which detaches the
verifier) — with a yield to the event loop every 64 stops (`APPLY_CHUNK`). Reported: wall and process CPU of the
whole stop, the time inside each of the two calls, and the longest chunk of 64 stops (one hold of the loop).
No database, no peers on the wire.

    python -m bench.bulk_stop --swarms 5000 [--peers 2] [--name NAME]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import Stopwatch, bench_settings, run, write_result
from tracker_watch.domain.evidence import Source, utc_now_ms
from tracker_watch.domain.peers import PeerListed
from tracker_watch.evidence.collector import Collector, TargetRef
from tracker_watch.swarm.engine import SwarmEngine
from tracker_watch.swarm.swarm import SwarmSpec

CHUNK = 64


async def measure(n: int, peers: int) -> dict[str, Any]:
    settings = bench_settings(Path(tempfile.mkdtemp(prefix="tw-bench-stop-")), "", "unused")
    collector = Collector("bench", "v", lambda o: None)
    engine = SwarmEngine(settings, collector.handle)
    await engine.start()
    assert engine.verifier is not None
    keys: list[str] = []
    try:
        for i in range(n):
            h = os.urandom(20)
            key = h.hex()
            keys.append(key)
            collector.set_targets(key, [TargetRef(i, h, None)])
            engine.watch(SwarmSpec(key=key, infohash_v1=h, infohash_v2=None, info=None, trackers=()))
            for p in range(peers):
                peer = (f"127.{1 + p}.{i // 250 % 250}.{i % 250 + 1}", 6881)
                collector.handle(PeerListed(key, peer, Source.TRACKER, utc_now_ms()))
                engine.verifier.offer(key, peer, 1)
            if i % CHUNK == 0:
                await asyncio.sleep(0)
        spent = {"collector_s": 0.0, "engine_s": 0.0}
        chunks: list[float] = []
        with Stopwatch() as whole:
            t_chunk = time.perf_counter()
            for i, key in enumerate(keys, 1):
                t = time.perf_counter()
                collector.set_targets(key, [])
                t2 = time.perf_counter()
                engine.unwatch(key)
                spent["collector_s"] += t2 - t
                spent["engine_s"] += time.perf_counter() - t2
                if i % CHUNK == 0:
                    chunks.append(time.perf_counter() - t_chunk)
                    await asyncio.sleep(0)
                    t_chunk = time.perf_counter()
        return {"swarms": n, "peers_per_swarm": peers, "stop_wall_s": whole.wall, "stop_cpu_s": whole.cpu,
                **spent, "longest_chunk_s": max(chunks, default=0.0), "chunks": len(chunks),
                "loadavg": os.getloadavg()}
    finally:
        await engine.stop()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--swarms", type=int, default=5000)
    ap.add_argument("--peers", type=int, default=2)
    ap.add_argument("--name", default="bulk_stop")
    args = ap.parse_args(argv)

    async def go() -> None:
        out = await measure(args.swarms, args.peers)
        print(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in out.items()))
        write_result(args.name, out)

    run(go)


if __name__ == "__main__":
    main()
