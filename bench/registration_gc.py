"""Registering N targets on a running daemon: how long until all are watched, the event-loop lag meanwhile, and
how much of it is Python's cyclic garbage collector (every collection timed through `gc.callbacks`).

The tracker is the load generator's (bench/loadgen.py, in its own process, with no peers); `--freeze` calls
`gc.freeze()` every 0.5 s during the registration (the first experiment), so that long-lived objects leave
the collector's generations. The daemon's own policy (swarm/heap.py: a freeze every 1,024 swarms started) runs
unless `--no-heap` turns it off (the "before" of that change).

    python -m bench.registration_gc --swarms 10000 [--freeze | --no-heap]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import subprocess
import sys
import time
from typing import Any

from bench import holds
from bench.capacity_load import _settings, max_bucket, quantile
from bench.common import fresh_schema, rss_bytes, run, server_dsn
from bench.loadgen import LoadTorrent, raise_fd_limit
from tracker_watch import metrics

_GC: list[tuple[int, float]] = []
_START: list[float] = [0.0]


def _timed(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _START[0] = time.perf_counter()
    else:
        _GC.append((int(info["generation"]), time.perf_counter() - _START[0]))


def _lag() -> dict[str, float]:
    return {s.labels["le"]: s.value for fam in metrics.EVENT_LOOP_LAG.collect() for s in fam.samples
            if s.name.endswith("_bucket")}


async def measure(n: int, url: str, freeze: bool) -> None:
    from tracker_watch.daemon import Daemon
    from tracker_watch.domain.targets import parse_target
    from tracker_watch.ledger import bulk

    items = [(parse_target(LoadTorrent(i, piece_length=16384, pieces=4).magnet(url)), "Bench Studio", f"Work {i}")
             for i in range(n)]
    async with server_dsn() as dsn, fresh_schema(dsn, "reg") as schema:
        daemon = Daemon(_settings(n, 0, dsn, schema))
        await daemon.start()
        assert daemon.engine is not None
        engine = daemon.engine

        async def freezer() -> None:
            while True:
                await asyncio.sleep(0.5)
                gc.freeze()

        task = asyncio.create_task(freezer()) if freeze else None
        await asyncio.sleep(1.0)  # the start's own holds are reported by the lag sampler before lag0, not after
        lag0, t0 = _lag(), time.time()
        gc.callbacks.append(_timed)
        async with daemon.db.pool.acquire() as conn, conn.transaction():
            await bulk.register_many(conn, items)
        while True:
            if len(engine.swarms) >= n:
                break
            await asyncio.sleep(0.1)
        wall = time.time() - t0
        gc.callbacks.remove(_timed)
        lag = {k: v - lag0.get(k, 0.0) for k, v in _lag().items()}
        full = [d for g, d in _GC if g == 2]
        print(f"registration of {n:,} targets (freeze={freeze}): all watched after {wall:.1f} s; lag p99 "
              f"{quantile(lag, 0.99) * 1000:.0f} ms, max ≤ {max_bucket(lag):g} s; full GC collections {len(full)}, "
              f"{sum(full):.2f} s in total, longest {max(full, default=0):.2f} s; "
              f"{len(gc.get_objects()):,} objects tracked, {gc.get_freeze_count():,} frozen; "
              f"RSS {rss_bytes() / 2**20:.0f} MiB")
        if task is not None:
            task.cancel()
        await daemon.stop()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.registration_gc", description=__doc__.split("\n")[0])
    p.add_argument("--swarms", type=int, default=10_000)
    p.add_argument("--freeze", action="store_true")
    p.add_argument("--no-heap", action="store_true", help="turn the daemon's gc.freeze policy off")
    args = p.parse_args(argv)
    if args.no_heap:
        from tracker_watch.swarm.heap import HeapKeeper
        HeapKeeper.freeze = lambda self: None  # type: ignore[method-assign]
    raise_fd_limit()
    holds.install()
    gen = subprocess.Popen([sys.executable, "-m", "bench.loadgen", "--swarms", str(args.swarms), "--peers", "0",
                            "--monitor-ip", "127.0.0.9", "--timeout", "1"], stdout=subprocess.PIPE, text=True)
    try:
        assert gen.stdout is not None
        url = next(line.split()[1] for line in gen.stdout if line.startswith("TRACKER "))
        run(lambda: measure(args.swarms, url, args.freeze))
    finally:
        gen.kill()


if __name__ == "__main__":
    main()
