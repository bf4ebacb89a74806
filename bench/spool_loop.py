"""How long the spool holds the event loop: appends at a steady rate, a batch committed every `--batch-size`
records (the database is a sleep of `--commit-ms`: only the spool's own disk calls are measured), a loop-lag
sampler, and `os.fsync` timed by the thread that calls it.

Base and after in one run: each variant is a directory holding `tracker_watch` (after = this tree; base =
`git archive main | tar -x -C DIR`), run as its own child process, alternated `--runs` times.

    python -m bench.spool_loop --base /tmp/fsync_base [--rate 3000 --seconds 20 --runs 3]

Reported per variant (medians over runs): fsync seconds on the loop's thread per wall second and per call,
loop lag p50 / p99 / max (a 2 ms sleep's overshoot), lags over 5 ms, and the records/s that reached "the
database". The spool lives under --dir (default: the state's disk, not a tmpfs, where fsync is free).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parents[1]


async def child(args: argparse.Namespace) -> dict[str, Any]:
    from bench.ingestion import make_observations
    from tracker_watch.domain.evidence import Observation
    from tracker_watch.evidence.batcher import Batcher
    from tracker_watch.evidence.spool import Spool

    loop_thread = threading.get_ident()
    fsyncs = {"loop_s": 0.0, "loop_calls": 0, "other_s": 0.0, "other_calls": 0}
    real_fsync = os.fsync

    def timed_fsync(fd: int) -> None:
        started = time.perf_counter()
        try:
            real_fsync(fd)
        finally:
            where = "loop" if threading.get_ident() == loop_thread else "other"
            fsyncs[f"{where}_s"] += time.perf_counter() - started
            fsyncs[f"{where}_calls"] += 1
    os.fsync = timed_fsync  # type: ignore[assignment]

    async def write(batch: Sequence[Observation]) -> int:
        await asyncio.sleep(args.commit_ms / 1000)
        return len(batch)

    observations = make_observations(min(args.rate * args.seconds, 200_000))
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        spool = Spool(Path(tmp) / "spool", 2**34, segment_bytes=args.segment_bytes)
        spool.open()
        b = Batcher(write, spool, batch_size=args.batch_size, flush_interval_s=1.0, fsync_interval_s=0.2)
        b.start()
        lags: list[float] = []
        stop = asyncio.Event()

        async def sampler() -> None:
            while not stop.is_set():
                started = time.perf_counter()
                await asyncio.sleep(0.002)
                lags.append(time.perf_counter() - started - 0.002)
        sampling = asyncio.create_task(sampler())
        per_tick, put = args.rate // 100, 0
        started = time.perf_counter()
        next_tick = started
        while time.perf_counter() - started < args.seconds:
            for _ in range(per_tick):
                b.put(observations[put % len(observations)])
                put += 1
            next_tick += 0.01
            await asyncio.sleep(max(0.0, next_tick - time.perf_counter()))
        wall = time.perf_counter() - started
        written = b.written
        stop.set()
        await sampling
        stopping = time.perf_counter()
        left = await b.stop(timeout=10)
        stop_s = time.perf_counter() - stopping
    lags.sort()
    return {"put": put, "written_during": written, "left": left, "wall_s": wall, "stop_s": stop_s,
            "records_per_s": written / wall, **fsyncs,
            "loop_fsync_share": fsyncs["loop_s"] / wall,
            "lag_p50_ms": 1000 * lags[len(lags) // 2], "lag_p99_ms": 1000 * lags[int(len(lags) * 0.99)],
            "lag_max_ms": 1000 * lags[-1], "lags_over_5ms": sum(1 for lag in lags if lag > 0.005)}


def run_variant(path: Path, args: argparse.Namespace) -> dict[str, Any]:
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", "--rate", str(args.rate), "--seconds",
            str(args.seconds), "--batch-size", str(args.batch_size), "--commit-ms", str(args.commit_ms),
            "--segment-bytes", str(args.segment_bytes), "--dir", args.dir]
    out = subprocess.run(argv, env={**os.environ, "PYTHONPATH": str(path)}, check=True, capture_output=True,
                         text=True).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--child", action="store_true")
    p.add_argument("--base", type=Path, default=Path("/tmp/fsync_base"))
    p.add_argument("--rate", type=int, default=3000, help="observations appended per second")
    p.add_argument("--seconds", type=int, default=20)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--commit-ms", type=float, default=20.0)
    p.add_argument("--segment-bytes", type=int, default=16 * 2**20)
    p.add_argument("--dir", default=str(HERE / "bench" / "results" / "spool-loop"))
    args = p.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(child(args))))
        return
    Path(args.dir).mkdir(parents=True, exist_ok=True)
    results: dict[str, list[dict[str, Any]]] = {"base": [], "after": []}
    for i in range(args.runs):
        order = [("base", args.base), ("after", HERE)] if i % 2 == 0 else [("after", HERE), ("base", args.base)]
        for name, path in order:
            r = run_variant(path, args)
            results[name].append(r)
            print(f"run {i + 1} {name}: loop fsync {r['loop_s']:.3f} s in {r['loop_calls']} calls "
                  f"({100 * r['loop_fsync_share']:.2f} % of wall), other thread {r['other_s']:.3f} s in "
                  f"{r['other_calls']}; lag p50 {r['lag_p50_ms']:.2f} p99 {r['lag_p99_ms']:.2f} max "
                  f"{r['lag_max_ms']:.1f} ms, >5 ms {r['lags_over_5ms']}; {r['records_per_s']:.0f} rec/s; "
                  f"stop {r['stop_s']:.3f} s", flush=True)
    for key in ("loop_fsync_share", "loop_s", "lag_p99_ms", "lag_max_ms", "lags_over_5ms", "records_per_s"):
        base = statistics.median(r[key] for r in results["base"])
        after = statistics.median(r[key] for r in results["after"])
        print(f"median {key}: base {base:.4g}, after {after:.4g}" + (f" ({after / base:.3g} x)" if base else ""))


if __name__ == "__main__":
    main()
