"""`tracker-watch lab`: a local swarm to run your own daemon against, until SIGINT or SIGTERM.

The demo's swarm (tracker, seeders, a decoy that only announces itself, a liar that sends garbage) on
loopback addresses of your choice. It prints the magnet to register and writes three files into --dir:
`magnet.txt`, `leases.csv` (the first two seeders are subscribers of the ISP "Lab Telecom") and an empty
`isp-drop/` folder for that ISP's notices — what README's "Running the daemon" walks through.
The content is the same every time (a fixed random seed), so the magnet is too.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import shutil
import signal
import tempfile
from pathlib import Path

from tracker_watch.demo.swarm import LocalSwarm

ISP = "Lab Telecom"


class LabError(Exception):
    """Bad lab options: one line, exit code 2."""


def _loopback(option: str, text: str) -> str:
    try:
        ip = ipaddress.ip_address(text.strip())
    except ValueError:
        raise LabError(f"{option}: {text!r} is not an IP address") from None
    if not ip.is_loopback or ip.version != 4:
        raise LabError(f"{option}: {text} is not an IPv4 loopback address (127.0.0.0/8); the lab never leaves "
                       "this machine")
    return str(ip)


def addresses(args: argparse.Namespace) -> tuple[str, int, list[str], str, str]:
    host, _, port_text = args.tracker.rpartition(":")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise LabError(f"--tracker: {args.tracker!r} is not IP:PORT with a port from 1 to 65535")
    tracker = _loopback("--tracker", host)
    seeders = [_loopback("--seeders", s) for s in args.seeders.split(",") if s.strip()]
    if not 1 <= len(seeders) <= 16:
        raise LabError("--seeders: give 1 to 16 addresses, comma-separated")
    decoy, liar = _loopback("--decoy", args.decoy), _loopback("--liar", args.liar)
    peers = [*seeders, *([] if args.no_decoy else [decoy]), *([] if args.no_liar else [liar])]
    if len(set(peers)) != len(peers):
        raise LabError("seeders, decoy and liar need distinct addresses")
    return tracker, int(port_text), seeders, decoy, liar


def write_files(folder: Path, magnet: str, seeders: list[str]) -> None:
    (folder / "isp-drop").mkdir(parents=True, exist_ok=True)
    (folder / "magnet.txt").write_text(magnet + "\n")
    (folder / "leases.csv").write_text("prefix,port_from,port_to,valid_from,valid_to,subscriber\n" + "".join(
        f"{ip},,,2020-01-01T00:00:00Z,,LAB-{1000 + i}\n" for i, ip in enumerate(seeders[:2])))


async def run_lab(args: argparse.Namespace) -> int:
    tracker, port, seeders, decoy, liar = addresses(args)
    base = Path(tempfile.mkdtemp(prefix="tracker-watch-lab-"))
    swarm = LocalSwarm(seeders=len(seeders), decoy=not args.no_decoy, liar=not args.no_liar, tracker_host=tracker,
                       tracker_port=port, seeder_addresses=seeders, decoy_ip=decoy, liar_ip=liar, base=base)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        try:
            await swarm.start()
        except OSError as exc:
            raise LabError(f"cannot start the lab's tracker or peers: {exc.strerror or exc}") from None
        magnet = swarm.content.magnet([swarm.tracker.url])
        write_files(args.dir, magnet, seeders)
        _print_intro(args.dir, swarm, decoy, liar, magnet)
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        if getattr(swarm, "tracker", None) is not None:
            await swarm.stop()
        shutil.rmtree(base, ignore_errors=True)
    print("lab: stopped", flush=True)
    return 0


def _print_intro(folder: Path, swarm: LocalSwarm, decoy: str, liar: str, magnet: str) -> None:
    c = swarm.content
    lines = [
        f"lab: tracker {swarm.tracker.url} (HTTP and UDP)",
        f"lab: seeders {', '.join(f'{p.ip}:{p.port}' for p in swarm.peers)} share {c.name!r} "
        f"({c.num_pieces} pieces of {c.piece_length // 1024} KiB)",
    ]
    if swarm.decoy:
        lines.append(f"lab: decoy {decoy} announces itself to the tracker and never answers (stays 'listed')")
    if swarm.liar_peer is not None:
        lines.append(f"lab: liar {liar}:{swarm.liar_peer.port} claims every piece and sends garbage (becomes "
                     "'corrupt')")
    lines += [
        f"lab: lease data of ISP {ISP!r}: {folder / 'leases.csv'} ({' and '.join(p.ip for p in swarm.peers[:2])} "
        "are its subscribers)",
        f"lab: a drop folder for that ISP's notices: {folder / 'isp-drop'}",
        f"lab: the magnet to register (also in {folder / 'magnet.txt'}):",
        magnet,
        "lab: running until Ctrl-C (SIGINT) or SIGTERM",
    ]
    print("\n".join(lines), flush=True)
