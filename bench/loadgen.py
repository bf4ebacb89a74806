"""Load generator for bench/capacity_load.py: a local tracker and simulated peers in processes of their own.

`--swarms N --peers P`: N torrents of cheap deterministic content (4 pieces of 16 KiB), N simulated peers on
127.1.x.y, peer j serving torrents j … j+P−1 (mod N), so every swarm has P active peers. The peers run in
`--procs` worker processes (bench/loadpeers.py; default one per 2,500 peers, at least 6), each with its own
open-file limit and its own contiguous address range; they listen before the load starts.

This process prints `TRACKER <url>`, waits until the monitor has announced from every `--monitor-ip` in every
swarm, prints `LOAD <unix time>`, enters every peer in the tracker (as their announces would; the monitor
finds them at its next announce) and has the workers dial every monitor endpoint for each of their torrents
at `--rate` dials/s in all (split over the workers). It stops once every (swarm, peer) pair was contacted,
as many blocks were served as there are pairs (the monitor's proof of each peer, or the bare session's P
pieces per swarm; not asked of the sink) and nothing new happened for QUIET_S (or at `--timeout`), then
prints `RESULT {json}` with the dials offered, the contacts reached and their rates.

`--sink K` is the generator's own baseline: no monitor, K sink processes (loadpeers.py) answer every
handshake on one SO_REUSEPORT port entered in the tracker as the monitor; contacts/s against it is what the
generator can offer on this machine at that moment. Everything stays on 127.0.0.0/8.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import time
from typing import Any

from bench.loadpeers import LoadTorrent, block, load_torrents, raise_fd_limit, sink, worker
from bench.peersim import addresses
from tracker_watch.demo.tracker import LocalTracker

__all__ = ["LoadTorrent", "main", "raise_fd_limit"]
QUIET_S = 3.0
PEERS_PER_PROC = 2500  # ~6 descriptors per peer (listener, P torrents × 2 monitor endpoints, the monitor's dials)


def _spawn(*argv: str) -> Any:
    return asyncio.create_subprocess_exec(sys.executable, "-m", "bench.loadgen", *argv,
                                          stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                                          limit=2**28)  # a report line holds every contact time


async def _read(proc: Any, prefix: str) -> str:
    async for raw in proc.stdout:
        line = raw.decode()
        if line.startswith(prefix):
            return str(line[len(prefix):].strip())
    raise RuntimeError(f"a load generator process ended without {prefix.strip()}")


async def _sinks(k: int, ips: list[str]) -> tuple[list[Any], list[tuple[str, int]]]:
    """K sink processes, each listening on one port per monitor address (as the node's session and verifier
    listener): the ports are reserved with bound (not listening) SO_REUSEPORT sockets first."""
    holds, ends = [], []
    for ip in ips:
        hold = socket.socket()
        hold.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        hold.bind((ip, 0))
        holds.append(hold)
        ends.append((ip, hold.getsockname()[1]))
    procs = [await _spawn("--sink-at", *(f"{ip}:{port}" for ip, port in ends)) for _ in range(k)]
    for p in procs:
        await _read(p, "READY")
    for hold in holds:
        hold.close()
    return procs, ends


async def main_async(args: argparse.Namespace) -> None:
    raise_fd_limit()
    tracker = LocalTracker(interval=60, peer_ttl=3600)
    await tracker.start()
    print("TRACKER", tracker.url, flush=True)
    n, pp = args.swarms, args.peers
    hashes = [t.info_hash for t in load_torrents(n)]
    sinks: list[Any] = []
    monitor_ips = set(args.monitor_ip)
    if args.sink:
        sinks, sink_ends = await _sinks(args.sink, args.monitor_ip)
        for h in hashes:
            for ip, port in sink_ends:
                tracker.record(h, ip, port, "started")
    procs = (args.procs or max(6, -(-n // PEERS_PER_PROC))) if pp else 0
    workers = [await _spawn("--swarms", str(n), "--peers", str(pp), "--procs", str(procs), "--worker", str(j))
               for j in range(procs)]
    ports = [json.loads(await _read(w, "READY")) for w in workers]

    def endpoints(h: bytes) -> set[tuple[str, int]]:
        swarm = tracker.swarms.get(h)
        return {p for p in swarm.peers if p[0] in monitor_ips} if swarm else set()

    give_up, said = time.monotonic() + 2 * args.timeout, time.monotonic()
    while missing := sum(1 for h in hashes if not {ip for ip, _ in endpoints(h)} >= monitor_ips):
        await asyncio.sleep(0.5)  # the monitor is in every swarm
        if time.monotonic() - said > 10:
            said = time.monotonic()
            print(f"• {missing:,} swarms still lack a monitor identity", file=sys.stderr, flush=True)
        if time.monotonic() > give_up:  # a node that never gets there (fencing at 10,000): load it anyway
            print("• the monitor is not in every swarm after 2 × --timeout: starting the load", file=sys.stderr)
            break
    load_start = time.time()
    print("LOAD", load_start, flush=True)
    ips = list(addresses(n))
    for j, block_ports in enumerate(ports):  # as the peers' announces would: listed at the monitor's next one
        for i, port in zip(block(n, procs, j), block_ports, strict=True):
            for k in range(pp):
                tracker.record(hashes[(i + k) % n], ips[i], port, "started")
    ends = sorted(set().union(*(endpoints(h) for h in hashes))) if hashes else []
    progress = [[0, 0, 0.0, False] for _ in workers]
    readers = [asyncio.create_task(_follow(w, progress[j])) for j, w in enumerate(workers)]
    for w in workers:
        w.stdin.write(f"go {args.rate / procs} {json.dumps(ends)}\n".encode())
    pairs = n * pp
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        contacted, blocks = sum(p[0] for p in progress), sum(p[1] for p in progress)
        if contacted >= pairs and (args.sink or blocks >= pairs) and all(p[3] for p in progress) \
                and time.time() - max((p[2] for p in progress), default=0.0) > QUIET_S:
            break
    for w in workers:
        w.stdin.write(b"stop\n")
    shard = [await r for r in readers]
    for w in workers:
        await w.wait()
    sunk = []
    for s in sinks:
        s.stdin.write(b"stop\n")
        sunk.append(json.loads(await _read(s, "R ")))
        await s.wait()
    await tracker.stop()
    print("RESULT", json.dumps(summary(args, load_start, ends, shard, sunk, procs)), flush=True)


def summary(args: argparse.Namespace, load_start: float, ends: list[tuple[str, int]], shard: list[dict[str, Any]],
            sunk: list[dict[str, Any]], procs: int) -> dict[str, Any]:
    """Offered: dials issued per second while the workers paced them. Reached: contacts per second over the
    same span, and until every pair was contacted; quantiles of the first contact of each pair."""
    firsts = sorted(t - load_start for r in shard for t in r["firsts"])
    contacts = sorted(t - load_start for r in shard for t in r["contacts"])
    issued = max((r["issued_until"] for r in shard), default=load_start) - load_start
    dials = sum(r["dials"] for r in shard)
    phase = [t for t in contacts if t <= issued + 2.0]  # the dials of the phase, answered
    last = max((r["last"] for r in shard), default=load_start)
    return {"swarms": args.swarms, "peers_per_swarm": args.peers, "sim_peers": args.swarms, "procs": procs,
            "rate_asked": args.rate, "monitor_endpoints": ends, "pairs": args.swarms * args.peers,
            "pairs_contacted": len(firsts), "dials": dials, "dials_failed": sum(r["dials_failed"] for r in shard),
            "dial_phase_s": issued, "offered_dials_per_s": dials / max(1e-9, issued),
            "contacts": len(contacts), "contacts_in_dial_phase": len(phase),
            "contacts_per_s_dial_phase": len(phase) / max(1e-9, issued, phase[-1] if phase else 0.0),
            "best_5s_contacts_per_s": _best(contacts, 5.0) / 5.0,
            # until as many contacts as dials were made (the node's own dials count too, once it announces again)
            "contacts_per_s": min(len(contacts), dials) / max(1e-9, contacts[min(len(contacts), dials) - 1])
            if contacts else 0.0,
            "blocks_served": sum(r["blocks"] for r in shard), "load_start": load_start,
            "all_contacted_s": firsts[-1] if firsts else float("nan"),
            "first_contact_quantiles_s": [firsts[int(q * (len(firsts) - 1))] for q in (0.1, 0.5, 0.9)]
            if firsts else [], "last_activity": last, "busy_s": last - load_start,
            "generator_cpu_s": sum(r["cpu_s"] for r in shard),
            "go_delay_s": max((r["started"] for r in shard), default=load_start) - load_start,
            "generator_load_cpu_s": sum(r["load_cpu_s"] for r in shard), "sink": sunk}


def _best(times: list[float], width: float) -> int:
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while times[lo] < t - width:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


async def _follow(proc: Any, progress: list[Any]) -> dict[str, Any]:
    """A worker's progress lines into `progress`; returns its final report."""
    async for raw in proc.stdout:
        line = raw.decode()
        if line.startswith("P "):
            progress[:] = json.loads(line[2:])
        elif line.startswith("R "):
            return dict(json.loads(line[2:]))
    raise RuntimeError("a load generator worker ended without its report")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__.split("\n")[0])
    p.add_argument("--swarms", type=int, default=0)
    p.add_argument("--peers", type=int, default=2)
    p.add_argument("--monitor-ip", nargs="+", default=["127.0.0.2"], help="every address the monitor announces")
    p.add_argument("--timeout", type=float, default=300.0)
    p.add_argument("--rate", type=float, default=1500.0, help="dials per second offered, all workers together")
    p.add_argument("--procs", type=int, default=0, help="peer worker processes (0: one per 2,500 peers, ≥ 6)")
    p.add_argument("--sink", type=int, default=0, help="no monitor: K sink processes (the generator's baseline)")
    p.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    p.add_argument("--sink-at", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    from bench.common import run

    if args.sink_at:
        run(lambda: sink(args.sink_at))
    elif args.worker is not None:
        run(lambda: worker(args.swarms, args.peers, args.procs, args.worker))
    else:
        run(lambda: main_async(args))


if __name__ == "__main__":
    main()
