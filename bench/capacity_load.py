"""Capacity under load: N busy swarms on one node (the real daemon) vs a bare libtorrent session, same peers.

Per scale and mode, three processes: the load generator (bench/loadgen.py: local tracker + N simulated peers,
peer j serving torrents j … j+P-1, so each swarm has P active peers), and the monitor under test:
  * node — tracker_watch.daemon.Daemon (PostgreSQL, libtorrent session, our announcer, the verifier's probes
    and listener, collector, evidence writer), the N targets registered in one bulk transaction while it runs;
  * bare (baseline) — a plain lt.session from the same settings pack with the same N magnets (tracker in the
    magnet), draining alerts every 0.1 s, wanting P pieces per swarm once metadata arrives (the node proves
    each of the P peers with one piece: the same payload).
Once the monitor has announced in every swarm the simulated peers start (as fast as the generator can) and
dial it; the load window runs from then until every (swarm, peer) pair was contacted and nothing new
happened for 3 s. Measured in the monitor's process: CPU-seconds over that window (all threads; and the
Python main thread alone), peak RSS, event-loop lag from tracker_watch_event_loop_lag_seconds (the same
50 ms sampler runs in the bare process), alerts dropped; in the generator: contacts and their rate.
PostgreSQL's own CPU is not in the node's figure. Targets (issue 14): RSS ≤ 2 GiB, CPU ≤ 1.5 × bare,
0 alerts dropped, ≥ 1,000 contacts/s, lag p99 ≤ 100 ms, and registering the targets never stalls the loop.

    python -m bench.capacity_load                          # 1,000 swarms × 2 peers (make bench)
    python -m bench.capacity_load --swarms 5000 10000      # full scale, one run each (~10 min)
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench import holds, knobs
from bench.common import bench_settings, cpu_yardstick, fresh_schema, niced, rss_bytes, run, server_dsn, write_result
from bench.loadgen import LoadTorrent, raise_fd_limit
from tracker_watch import metrics
from tracker_watch.demo.run import PROBE_IP

MONITOR_IP = "127.0.0.2"  # the session's address in bench_settings (demo settings); the verifier's is PROBE_IP
TICK = os.sysconf("SC_CLK_TCK")


def _settings(n: int, peers: int, dsn: str = "", schema: str = "unused", lease_ttl_s: float = 30.0) -> Any:
    return bench_settings(
        Path(tempfile.mkdtemp(prefix="tw-bench-load-")), dsn, schema,
        trackers={"min_interval_s": 60.0, "max_interval_s": 1800.0, "timeout_s": 15.0},
        verify={"redial_s": 300.0, **knobs.verify_settings()},
        collector={"flush_interval_s": 1.0, "reobserve_s": 900.0},
        swarm={"connections_limit": 3 * n * peers + 200, "peer_refresh_s": 60.0},
        daemon={"target_poll_s": 2.0}, api={"enabled": False}, metrics={"enabled": False},
        node={"lease_ttl_s": lease_ttl_s},  # 30 s is the product's; --lease-ttl measures past a fencing node
        # the product's defaults, not the demo's once-a-second ledger and outbox passes
        policy={"evaluate_interval_s": 10.0}, notices={"delivery_interval_s": 5.0})


class GcClock:
    """Every cyclic garbage collection, timed (gc.callbacks): (end time, generation, seconds). A collection
    stops the event loop, and py-spy charges it to whatever frame happened to allocate."""

    def __init__(self) -> None:
        self.done: list[tuple[float, int, float]] = []
        self._t0 = 0.0
        gc.callbacks.append(self._on)

    def _on(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            self.done.append((time.time(), int(info["generation"]), time.perf_counter() - self._t0))

    def window(self, t0: float, t1: float) -> dict[str, float]:
        inside = [(g, d) for t, g, d in self.done if t0 <= t <= t1]
        full = [d for g, d in inside if g == 2]
        return {"gc_s": sum(d for _, d in inside), "gc_collections": len(inside), "gc_full": len(full),
                "gc_full_s": sum(full), "gc_longest_s": max((d for _, d in inside), default=0.0)}


class Sampler:
    """Every 0.5 s: wall time, process CPU, main-thread CPU, RSS, the lag histogram's buckets, and extras."""

    def __init__(self, extra: Any) -> None:
        self.rows: list[dict[str, Any]] = []
        self.gc = GcClock()
        self.extra = extra
        self.main_tid = threading.main_thread().native_id
        self.backends: set[int] = set()  # PostgreSQL backend pids serving this process (node only)

    def sample(self) -> None:
        with open(f"/proc/self/task/{self.main_tid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        buckets = {s.labels["le"]: s.value for fam in metrics.EVENT_LOOP_LAG.collect() for s in fam.samples
                   if s.name.endswith("_bucket")}
        main = (int(fields[11]) + int(fields[12])) / TICK  # utime + stime of the event loop's thread
        kids = os.times()
        self.rows.append({"t": time.time(), "cpu": time.process_time() + kids.children_user + kids.children_system,
                          "main": main, "rss": rss_bytes(), "lag": buckets, "pg": _proc_cpu(self.backends),
                          **self.extra()})

    async def run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(0.5)

    def window(self, t0: float, t1: float) -> dict[str, float]:
        inside = [r for r in self.rows if t0 - 0.5 <= r["t"] <= t1 + 0.5] or self.rows[-2:]
        a, b = inside[0], inside[-1]
        wall = max(1e-9, b["t"] - a["t"])
        lag = {k: b["lag"][k] - a["lag"].get(k, 0.0) for k in b["lag"]}
        out = {"wall_s": wall, "cpu_s": b["cpu"] - a["cpu"], "main_thread_cpu_s": b["main"] - a["main"],
               "cpu_cores": (b["cpu"] - a["cpu"]) / wall, "rss_peak_mib": max(r["rss"] for r in inside) / 2**20,
               "lag_samples": lag["+Inf"], "lag_p50_s": quantile(lag, 0.5), "lag_p99_s": quantile(lag, 0.99),
               "lag_max_le_s": max_bucket(lag)}
        out["pg_backend_cpu_s"] = sum(cpu - a["pg"].get(pid, 0.0) for pid, cpu in b["pg"].items())
        out["pg_backends"] = len(b["pg"])
        out.update(self.gc.window(t0, t1))
        out.update({k: b[k] - a[k] for k in b if k not in ("t", "cpu", "main", "rss", "lag", "pg")})
        return out


def _proc_cpu(pids: set[int]) -> dict[int, float]:
    """utime + stime of each process (a PostgreSQL backend on this machine); gone ones are left out."""
    out = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[pid] = (int(fields[11]) + int(fields[12])) / TICK
    return out


async def _follow_backends(sampler: Sampler, pool: Any) -> None:
    """The node's PostgreSQL backends: its pool's connections' server pids, looked up every 2 s (the pool sets
    application_name itself, so pg_stat_activity cannot tell this node's backends from other benchmarks')."""
    while True:
        for holder in getattr(pool, "_holders", []):  # asyncpg's pool internals: a benchmark may look
            con = getattr(holder, "_con", None)
            if con is not None and not con.is_closed():
                sampler.backends.add(int(con.get_server_pid()))
        await asyncio.sleep(2.0)


def quantile(cumulative: dict[str, float], q: float) -> float:
    """histogram_quantile: linear within the bucket where the q-th sample falls."""
    bounds = sorted((float(k), v) for k, v in cumulative.items())
    total = bounds[-1][1]
    if total <= 0:
        return float("nan")
    rank, lower, below = q * total, 0.0, 0.0
    for upper, count in bounds:
        if count >= rank:
            if upper == float("inf"):
                return lower
            return lower + (upper - lower) * (rank - below) / max(1e-9, count - below)
        lower, below = upper, count
    return lower


def max_bucket(cumulative: dict[str, float]) -> float:
    """Upper bound of the highest non-empty bucket: the longest hold was at most this."""
    bounds = sorted((float(k), v) for k, v in cumulative.items())
    prev = 0.0
    top = 0.0
    for upper, count in bounds:
        if count > prev:
            top = upper
        prev = count
    return top


async def _until_stopped(sampler: Sampler, marks: dict[str, float]) -> dict[str, Any]:
    print("WATCHING", flush=True)
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    sampler.sample()
    _, t0, t1, tc = line.split()
    return {"load": sampler.window(float(t0), float(t1)), "contact_phase": sampler.window(float(t0), float(tc)),
            "registration": sampler.window(marks["reg0"], marks["reg1"]),
            "rss_end_mib": sampler.rows[-1]["rss"] / 2**20}


async def child_node(args: argparse.Namespace) -> dict[str, Any]:
    from tracker_watch.daemon import Daemon
    from tracker_watch.domain.targets import parse_target
    from tracker_watch.ledger import bulk

    torrents = [LoadTorrent(i, piece_length=16384, pieces=4) for i in range(args.swarms)]
    knobs.apply_to_process()  # TW_BENCH_* experiments (bench/knobs.py)
    async with server_dsn() as dsn, fresh_schema(dsn, "load") as schema:
        daemon = Daemon(_settings(args.swarms, args.peers, dsn, schema, args.lease_ttl))
        await daemon.start()
        engine = daemon.engine
        assert engine is not None
        assert daemon.batcher is not None
        verifier = engine.verifier
        sampler = Sampler(lambda: {"alerts_dropped": float(engine.alerts_dropped),
                                   "observations_written": float(daemon.batcher.written if daemon.batcher else 0),
                                   "verified": float(verifier.stats["verified"] if verifier else 0)})
        task = asyncio.create_task(sampler.run())
        backends = asyncio.create_task(_follow_backends(sampler, daemon.db.pool))
        # parsed before the registration starts: the API parses a bulk request in a worker thread
        # (api/targets.py); parsed here, 10,000 magnets held this loop ~0.3–0.5 s inside the registration window
        items = [(parse_target(t.magnet(args.tracker)), "Bench Studio", f"Work {t.index}") for t in torrents]
        # the lag sampler reports that hold when it wakes; the registration window takes the sampler's rows from
        # 0.5 s before reg0, so let both happen first
        await asyncio.sleep(1.0)
        marks = {"reg0": time.time()}
        async with daemon.db.pool.acquire() as conn, conn.transaction():
            await bulk.register_many(conn, items)
        while True:  # the watchlist picks them up within daemon.target_poll_s
            if len(engine.swarms) >= args.swarms:
                break
            await asyncio.sleep(0.1)
        marks["reg1"] = time.time()
        try:
            out = await _until_stopped(sampler, marks)
        finally:
            task.cancel()
            backends.cancel()
            await daemon.stop()
        out["alerts_dropped_total"] = engine.alerts_dropped
        out["verifier"] = dict(verifier.stats) if verifier else {}
        return out


async def child_bare(args: argparse.Namespace) -> dict[str, Any]:
    import libtorrent as lt

    from tracker_watch.swarm.settings import apply_zero_upload_peer_classes, new_session, session_settings

    settings = _settings(args.swarms, args.peers)
    pack = session_settings(settings.swarm, user_agent="bench")
    session = new_session(pack)
    apply_zero_upload_peer_classes(session)
    counts = {"alerts_dropped": 0.0, "metadata": 0.0}

    async def drain() -> None:  # what an application must do, or libtorrent's queue grows (and drops)
        while True:
            for a in session.pop_alerts():
                name = type(a).__name__
                if name == "alerts_dropped_alert":
                    counts["alerts_dropped"] += 1
                elif name == "metadata_received_alert":
                    counts["metadata"] += 1
                    for piece in range(args.peers):
                        a.handle.piece_priority(piece, 7)
            await asyncio.sleep(0.1)

    sampler = Sampler(lambda: dict(counts))
    tasks = [asyncio.create_task(sampler.run()), asyncio.create_task(drain()),
             asyncio.create_task(metrics.watch_loop_lag())]
    marks = {"reg0": time.time()}
    save = tempfile.mkdtemp(prefix="tw-bench-load-payload-", dir="/dev/shm")
    for i in range(args.swarms):
        params = lt.parse_magnet_uri(LoadTorrent(i, piece_length=16384, pieces=4).magnet(args.tracker))
        params.save_path = save
        flags = params.flags | lt.torrent_flags.default_dont_download | lt.torrent_flags.disable_dht \
            | lt.torrent_flags.disable_lsd
        params.flags = flags & ~(lt.torrent_flags.auto_managed | lt.torrent_flags.paused)
        session.async_add_torrent(params)
    marks["reg1"] = time.time()
    out = await _until_stopped(sampler, marks)
    for t in tasks:
        t.cancel()
    out["alerts_dropped_total"] = counts["alerts_dropped"]
    out["metadata_received"] = counts["metadata"]
    await asyncio.to_thread(session.pause)
    return out


def _line(proc: subprocess.Popen[str], prefix: str) -> str:
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(prefix):
            return line[len(prefix):].strip()
    raise RuntimeError(f"{prefix.strip()} never came (exit {proc.wait()})")


def measure(mode: str, n: int, args: argparse.Namespace) -> dict[str, Any]:
    """One scale, one mode: `sink` (the generator against its trivial sink: what it offers), `bare`, `node`."""
    me = [sys.executable, "-m"]
    ips = [MONITOR_IP, PROBE_IP] if mode != "bare" else [MONITOR_IP]  # the node announces both identities
    gen = subprocess.Popen([*me, "bench.loadgen", "--swarms", str(n), "--peers", str(args.peers), "--monitor-ip",
                            *ips, "--timeout", str(args.timeout), "--rate", str(args.rate), "--procs", str(args.procs),
                            *(["--sink", str(args.sinks)] if mode == "sink" else [])],
                           stdout=subprocess.PIPE, text=True, preexec_fn=niced(args.generator_nice))
    node = None
    try:
        url = _line(gen, "TRACKER ")
        if mode == "sink":
            load = json.loads(_line(gen, "RESULT "))
            return {"load": load, "loadavg": os.getloadavg()}
        node = subprocess.Popen([*me, "bench.capacity_load", "--child", mode, "--swarms", str(n), "--peers",
                                 str(args.peers), "--tracker", url, "--lease-ttl", str(args.lease_ttl)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True)
        _line(node, "WATCHING")
        load = json.loads(_line(gen, "RESULT "))
        assert node.stdin is not None
        contact_end = load["load_start"] + load["all_contacted_s"] + 3.0  # every pair reached, not yet all proven
        node.stdin.write(f"stop {load['load_start']} {load['last_activity']} {contact_end}\n")
        node.stdin.flush()
        mon = json.loads(_line(node, "RESULT "))
        node.wait(timeout=120)
    finally:
        for proc in (gen, node):
            if proc is not None and proc.poll() is None:
                proc.kill()
    return {"load": load, "monitor": mon, "loadavg": os.getloadavg()}


def _print(n: int, peers: int, mode: str, r: dict[str, Any]) -> None:
    lg = r["load"]
    if mode == "sink":
        print(f"capacity_load {n:>6,} × {peers} [generator → sink]: {lg['dials']:,} dials offered at "
              f"{lg['offered_dials_per_s']:,.0f}/s ({lg['procs']} processes), reached "
              f"{lg.get('contacts_per_s', 0):,.0f} contacts/s (best 5 s {lg['best_5s_contacts_per_s']:,.0f}/s), "
              f"generator CPU {lg['generator_load_cpu_s']:.1f} s; load avg {r['loadavg'][0]:.1f}", flush=True)
        return
    m = r["monitor"]["load"]
    print(f"capacity_load {n:>6,} × {peers} [{mode}]: pairs {lg['pairs_contacted']:,}/{lg['pairs']:,} in "
          f"{lg['all_contacted_s']:.1f} s; dials offered {lg['offered_dials_per_s']:,.0f}/s, contacts "
          f"{lg['contacts']:,} ({lg.get('contacts_per_s', 0):,.0f}/s until as many as dials, best 5 s "
          f"{lg['best_5s_contacts_per_s']:,.0f}/s); blocks {lg['blocks_served']:,}; window {m['wall_s']:.0f} s: "
          f"CPU {m['cpu_s']:.1f} s (main thread {m['main_thread_cpu_s']:.1f} s, PostgreSQL backends "
          f"{m['pg_backend_cpu_s']:.1f} s); RSS peak {m['rss_peak_mib']:.0f} MiB; lag p50/p99 "
          f"{m['lag_p50_s'] * 1000:.0f}/{m['lag_p99_s'] * 1000:.0f} ms (max ≤ {m['lag_max_le_s']:g} s); "
          f"GC {m.get('gc_s', 0.0):.2f} s "
          f"(longest {m.get('gc_longest_s', 0.0) * 1000:.0f} ms, {m.get('gc_full', 0):.0f} full); alerts "
          f"dropped {r['monitor']['alerts_dropped_total']:.0f}; load avg {r['loadavg'][0]:.1f}", flush=True)


def _ratios(n: int, res: dict[str, Any]) -> dict[str, Any]:
    """node / bare CPU over each one's load window, which ends when the same work is done (every pair
    contacted, N × P blocks served, 3 s quiet); and, as before, until every pair was contacted."""
    b, d = res["bare"]["monitor"], res["node"]["monitor"]
    ratio = d["load"]["cpu_s"] / max(1e-9, b["load"]["cpu_s"])
    with_pg = (d["load"]["cpu_s"] + d["load"]["pg_backend_cpu_s"]) / max(1e-9, b["load"]["cpu_s"])
    contact = d["contact_phase"]["cpu_s"] / max(1e-9, b["contact_phase"]["cpu_s"])
    print(f"capacity_load {n:>6,}: CPU node / bare = {ratio:.2f} (with the node's PostgreSQL backends {with_pg:.2f}) "
          f"for the same work; until every pair was contacted (+3 s) {contact:.2f}; node verified "
          f"{d['verifier'].get('verified', 0):,} peers", flush=True)
    return {"cpu_ratio": ratio, "cpu_ratio_with_pg": with_pg, "cpu_ratio_contact_phase": contact}


def parent(args: argparse.Namespace) -> None:
    rows: list[dict[str, Any]] = []
    yardstick = cpu_yardstick()  # before the load: this host's speed today (bench/common.py)
    print(f"capacity_load: CPU yardstick {yardstick * 1000:.0f} ms; load avg {os.getloadavg()[0]:.1f}", flush=True)
    for n in args.swarms:
        row: dict[str, Any] = {"swarms": n, "peers_per_swarm": args.peers}
        rows.append(row)
        for mode in args.modes:  # one at a time: the generator's baseline first; written as each one ends
            row[mode] = measure(mode, n, args)
            _print(n, args.peers, mode, row[mode])
            write_result(args.name, {"scale": vars(args), "yardstick_s": yardstick, "rows": rows})
        if "bare" in row and "node" in row:
            row.update(_ratios(n, row))
            write_result(args.name, {"scale": vars(args), "yardstick_s": yardstick, "rows": rows})


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.capacity_load", description=__doc__.split("\n")[0])
    p.add_argument("--swarms", type=int, nargs="+", default=[1000])
    p.add_argument("--peers", type=int, default=2, help="active simulated peers per swarm")
    p.add_argument("--timeout", type=float, default=150.0, help="longest load window, seconds")
    p.add_argument("--name", default="capacity_load", help="results file bench/results/<name>.json")
    p.add_argument("--rate", type=float, default=3000.0, help="peer dials per second asked of the generator")
    p.add_argument("--procs", type=int, default=0, help="generator worker processes (0: bench.loadgen's default)")
    p.add_argument("--sinks", type=int, default=3, help="sink processes for the generator's own baseline")
    p.add_argument("--generator-nice", type=int, default=0,
                   help="niceness added to the generator's processes (19: the node runs first when both want a core)")
    p.add_argument("--lease-ttl", type=float, default=30.0, help="node.lease_ttl_s (product default 30)")
    p.add_argument("--modes", nargs="+", choices=("sink", "bare", "node"), default=["sink", "bare", "node"])
    p.add_argument("--child", choices=("node", "bare"), help=argparse.SUPPRESS)
    p.add_argument("--tracker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not args.child:
        parent(args)
        return
    raise_fd_limit()
    holds.install()  # TW_BENCH_HOLDS=seconds: print what holds the loop longer (bench/holds.py)
    args.swarms = args.swarms[0]
    result: dict[str, Any] = {}

    async def go() -> None:
        result.update(await (child_node if args.child == "node" else child_bare)(args))
    run(go)
    print("RESULT", json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
