"""Capacity benchmark (partial): N monitored swarms in tracker-watch's SwarmEngine vs a bare libtorrent session.

What it measures today: resident memory and CPU of N *idle* swarms (magnet-only targets, no peers), each
configuration in a fresh child process so memory figures do not mix:
  * engine — tracker_watch.swarm.engine.SwarmEngine with the monitor's settings, every target watched;
  * bare (baseline) — a libtorrent session from the same settings pack, the same magnets, same flags.
CPU is process CPU over a quiet window after the swarms were added; RSS is measured after adding minus
before. What it does NOT measure yet: peers observed/s and alerts dropped under load, which need the
peer simulator (bench/peersim, not built). Targets (issue 7): 10,000 swarms ≤ 2 GiB RSS, engine CPU
≤ 1.5 × bare, zero alerts dropped.

    python -m bench.capacity                          # 500 and 2,000 swarms, 3 runs each
    python -m bench.capacity --swarms 1000 5000 10000 # full scale
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import bench_settings, median, rss_bytes, run, write_result

WINDOW_S = 15.0


def infohash(i: int) -> bytes:
    return hashlib.sha1(f"bench-capacity-{i}".encode()).digest()


async def child_engine(n: int) -> dict[str, float]:
    from tracker_watch.swarm.engine import SwarmEngine
    from tracker_watch.swarm.swarm import SwarmSpec

    settings = bench_settings(Path(tempfile.mkdtemp(prefix="tw-bench-cap-")), "", "unused")
    engine = SwarmEngine(settings, lambda _event: None)
    await engine.start()
    before = rss_bytes()
    t = time.perf_counter()
    for i in range(n):
        h = infohash(i)
        engine.watch(SwarmSpec(key=h.hex(), infohash_v1=h, infohash_v2=None, info=None, trackers=()))
    add_s = time.perf_counter() - t
    result = await _window(before, add_s)
    await engine.stop()
    return result


async def child_bare(n: int) -> dict[str, float]:
    import libtorrent as lt

    from tracker_watch.swarm.settings import apply_zero_upload_peer_classes, new_session, session_settings

    settings = bench_settings(Path(tempfile.mkdtemp(prefix="tw-bench-cap-")), "", "unused")
    session = new_session(session_settings(settings.swarm, user_agent="bench"))
    apply_zero_upload_peer_classes(session)
    before = rss_bytes()
    t = time.perf_counter()
    save = tempfile.mkdtemp(prefix="tw-bench-cap-payload-")
    for i in range(n):
        params = lt.parse_magnet_uri("magnet:?xt=urn:btih:" + infohash(i).hex())
        params.save_path = save
        params.flags |= lt.torrent_flags.default_dont_download | lt.torrent_flags.disable_dht \
            | lt.torrent_flags.disable_lsd
        session.async_add_torrent(params)
    add_s = time.perf_counter() - t
    # drain alerts as an application must, or libtorrent's queue grows (and drops) instead
    drain = asyncio.create_task(_drain(session))
    result = await _window(before, add_s)
    drain.cancel()
    return result


async def _drain(session: Any) -> None:
    while True:
        session.pop_alerts()
        await asyncio.sleep(0.1)


async def _window(rss_before: int, add_s: float) -> dict[str, float]:
    await asyncio.sleep(3.0)  # let the adds settle before the quiet window starts
    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.sleep(WINDOW_S)
    cpu = (time.process_time() - cpu0) / (time.perf_counter() - t0)
    return {"add_s": add_s, "rss_bytes": float(rss_bytes() - rss_before), "cpu_share": cpu}


def measure(mode: str, n: int) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-m", "bench.capacity", "--child", mode, "--swarms", str(n)],
                         check=True, capture_output=True, text=True).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def parent(args: argparse.Namespace) -> None:
    rows = []
    for n in args.swarms:
        runs = [{m: measure(m, n) for m in ("bare", "engine")} for _ in range(args.runs)]
        med = {m: {k: median([r[m][k] for r in runs]) for k in runs[0][m]} for m in ("bare", "engine")}
        e, b = med["engine"], med["bare"]
        row = {"swarms": n, "runs": runs, "median": med,
               "engine_rss_per_swarm_kib": e["rss_bytes"] / n / 1024,
               "bare_rss_per_swarm_kib": b["rss_bytes"] / n / 1024,
               "engine_rss_10k_gib_extrapolated": e["rss_bytes"] / n * 10_000 / 2**30,
               "cpu_ratio": e["cpu_share"] / b["cpu_share"] if b["cpu_share"] > 0 else float("inf")}
        print(f"capacity {n:>6,} swarms: RSS engine {row['engine_rss_per_swarm_kib']:.1f} KiB/swarm, bare "
              f"{row['bare_rss_per_swarm_kib']:.1f} KiB/swarm; idle CPU engine {e['cpu_share']:.3f}, bare "
              f"{b['cpu_share']:.3f} cores (ratio {row['cpu_ratio']:.2f}); "
              f"add {e['add_s']:.2f} s vs {b['add_s']:.2f} s")
        rows.append(row)
    write_result("capacity", {"scale": vars(args), "idle_swarms_only": True, "rows": rows})


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.capacity", description=__doc__.split("\n")[0])
    p.add_argument("--swarms", type=int, nargs="+", default=[500, 2000])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--child", choices=("engine", "bare"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child = child_engine if args.child == "engine" else child_bare
        result: dict[str, float] = {}

        async def go() -> None:
            result.update(await child(args.swarms[0]))
        run(go)
        print(json.dumps(result))
    else:
        parent(args)


if __name__ == "__main__":
    main()
