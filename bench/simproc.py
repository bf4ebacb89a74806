"""Simulated peers in a process of their own (bench/peersim.py), for runs too big for one process.

At 5,000 peers both ends of every connection in one process would need more file descriptors than the
machine allows a process (20,000 here), and the simulator's CPU would be charged to the daemon's loop.
Started by bench.latency with `--peer-process`; prints `started <ip> <unix time>` per peer as it starts
serving, and stops every peer when its stdin closes.

    python -m bench.simproc --tracker http://127.0.0.1:PORT/announce --torrents 1000 --peers 5 --stagger 60
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import aiohttp

from bench.peersim import SimPeer, SimTorrent, addresses


async def main_async(args: argparse.Namespace) -> None:
    torrents = [SimTorrent(i) for i in range(args.torrents)]
    ips = addresses(args.torrents * args.peers)
    peers = [SimPeer(next(ips), {t.info_hash: t}, args.tracker) for t in torrents for _ in range(args.peers)]
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    async with aiohttp.ClientSession() as http:
        async def starter() -> None:
            gap = args.stagger / max(1, len(peers))
            for p in peers:
                await p.start(http)
                print(f"started {p.ip} {p.started_at:.6f}", flush=True)
                await asyncio.sleep(gap)

        task = asyncio.create_task(starter())
        await reader.read()  # until the parent closes our stdin
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        for p in peers:
            await p.stop()
    print(f"blocks {sum(p.blocks_sent for p in peers)}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tracker", required=True)
    p.add_argument("--torrents", type=int, required=True)
    p.add_argument("--peers", type=int, required=True)
    p.add_argument("--stagger", type=float, required=True)
    asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    main()
