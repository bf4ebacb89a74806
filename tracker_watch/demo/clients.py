"""Real third-party BitTorrent clients (Debian packages) as seeders on their own 127.0.0.x addresses.

Each client runs in its own process group with its own working directory and configuration, binds its
peer port to the given loopback address only, announces to the given tracker and talks to nobody else:
no DHT, no local peer discovery, no PEX, no UPnP/NAT-PMP, no web seeds, no update or GeoIP look-ups.
A seeder is ready when a handshake on ip:port gets a bitfield claiming every piece — clients send that
only after checking their data. `stop()` ends the whole process group (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from tracker_watch.demo import client_configs as cc
from tracker_watch.demo.probe import ProbeError, claimed_pieces
from tracker_watch.demo.swarm import Content
from tracker_watch.domain import bencode

Kind = Literal["transmission", "aria2", "rtorrent", "qbittorrent"]
Encryption = Literal["prefer", "require", "plaintext"]
KINDS: tuple[Kind, ...] = ("transmission", "aria2", "rtorrent", "qbittorrent")
BINARIES: dict[Kind, str] = {"transmission": "transmission-daemon", "aria2": "aria2c", "rtorrent": "rtorrent",
                             "qbittorrent": "qbittorrent-nox"}
# Measured on loopback (Debian 12: transmission 3.00, aria2 1.36, rtorrent 0.9.8, qBittorrent 4.5.2):
# - a second connection from an address already connected is refused by transmission, rtorrent and
#   qBittorrent (closed before their handshake); aria2 accepts it;
# - a peer that claims every piece (a seed) is dropped at once by all four; a silent peer (no bitfield,
#   not interested) is kept by transmission, rtorrent and qBittorrent, dropped by aria2 after ~30 s;
# - transmission unchokes only at its 10 s rechoke: its first block comes ~10 s after connecting;
# - with a 2 s tracker interval transmission and aria2 re-announce every 2 s; rtorrent and qBittorrent
#   (libtorrent's 5 min minimum) announce once; rtorrent and qBittorrent send `stopped` on SIGTERM.
# whether the client accepts uTP: a libtorrent leecher tries uTP first and reaches TCP-only clients only
# after its uTP attempt times out (about 4.5 s on loopback)
UTP: dict[Kind, bool] = {"transmission": True, "aria2": False, "rtorrent": False, "qbittorrent": True}
STOP_GRACE = 10.0  # seconds between SIGTERM and SIGKILL: long enough for a `stopped` announce


class SeederError(RuntimeError):
    """A client did not start, or did not seed in time; the message ends with its log."""


def available(kind: Kind) -> bool:
    needed = [BINARIES[kind]] + (["transmission-remote"] if kind == "transmission" else [])
    return all(shutil.which(command) for command in needed)


@dataclass
class RealSeeder:
    kind: Kind
    ip: str
    port: int
    process: asyncio.subprocess.Process
    workdir: Path
    log_path: Path
    started: float  # time.monotonic() at launch
    ready_after: float = 0.0  # seconds from launch to a full bitfield
    _stopped: bool = field(default=False, repr=False)

    @property
    def utp(self) -> bool:
        return UTP[self.kind]

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of every log the client wrote (its output, and its own log file if it has one)."""
        tails = []
        for path in sorted(self.workdir.glob("*.log")):
            with contextlib.suppress(OSError):
                text = path.read_text(errors="replace").splitlines()[-lines:]
                tails.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(tails)

    async def stop(self, grace: float = STOP_GRACE) -> None:
        """SIGTERM the process group, SIGKILL what is left after `grace` seconds; idempotent."""
        if self._stopped:
            return
        self._stopped = True
        _signal_group(self.pid, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.process.wait(), grace)
        _signal_group(self.pid, signal.SIGKILL)  # also helpers the leader left behind
        await self.process.wait()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def group_alive(pgid: int) -> bool:
    """Whether any process of the group still exists (zombies of a reaped leader do not count)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def free_port(ip: str) -> int:
    """A port free for both TCP and UDP (uTP) on `ip`."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((ip, 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((ip, port))
                except OSError:
                    continue
                return port
    raise SeederError(f"no free TCP+UDP port on {ip}")


def with_announce(torrent: bytes, tracker_url: str) -> bytes:
    """The same torrent (same info dictionary, same infohash) with `announce` set to `tracker_url`."""
    meta = bencode.decode(torrent)
    if not isinstance(meta, dict):
        raise ValueError("a .torrent must be a bencoded dictionary")
    meta[b"announce"] = tracker_url.encode()
    meta.pop(b"announce-list", None)
    meta.pop(b"url-list", None)  # web seeds would fetch over HTTP
    meta.pop(b"httpseeds", None)
    return bencode.encode(meta)


async def start_seeder(kind: Kind, content: Content, ip: str, *, workdir: Path, tracker_url: str | None = None,
                       encryption: Encryption = "prefer", upload_limit_kib: int | None = None,
                       ready_timeout: float = 60.0) -> RealSeeder:
    """Launch `kind` seeding `content` (a v1 or hybrid torrent; its v1 infohash is used) on `ip`."""
    if kind not in BINARIES:
        raise ValueError(f"unknown client {kind!r}; expected one of {', '.join(KINDS)}")
    if not available(kind):
        raise SeederError(f"{BINARIES[kind]} (or its companion command) is not installed")
    if content.v1 is None:
        raise ValueError("real clients need a torrent with a v1 infohash")
    if kind == "rtorrent" and not tracker_url:
        raise ValueError("rtorrent refuses a torrent without a tracker: give tracker_url")
    if encryption not in ("prefer", "require", "plaintext"):
        raise ValueError(f"encryption must be prefer, require or plaintext, not {encryption!r}")
    if upload_limit_kib is not None and not 0 < upload_limit_kib < 2**31 // 1024:
        raise ValueError(f"upload_limit_kib must be a positive number of KiB/s, not {upload_limit_kib!r}")
    own = workdir / f"{kind}-{ip}"
    data = own / "data"
    data.mkdir(parents=True, exist_ok=True)
    # a copy, not a link: a client that rewrote its file would otherwise change every other seeder's
    await asyncio.to_thread(shutil.copyfile, content.data_dir / content.name, data / content.name)
    torrent = own / "seed.torrent"
    torrent.write_bytes(with_announce(content.torrent, tracker_url) if tracker_url else content.torrent)
    port = free_port(ip)
    spec = cc.Spec(ip=ip, port=port, own=own, data=data, torrent=torrent, encryption=encryption,
                   upload_limit_kib=upload_limit_kib, rpc_port=free_port("127.0.0.1"))
    argv, after_start = _BUILDERS[kind](spec)
    if setpriv := shutil.which("setpriv"):
        # the client gets SIGTERM if we die without stop(): no seeder outlives its test or lab
        argv = [setpriv, "--pdeathsig", "SIGTERM", "--", *argv]
    log_path = own / "client.log"
    with log_path.open("ab") as log:
        process = await asyncio.create_subprocess_exec(
            *argv, cwd=own, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            env=cc.client_env(own))
    seeder = RealSeeder(kind=kind, ip=ip, port=port, process=process, workdir=own, log_path=log_path,
                        started=time.monotonic())
    try:
        if after_start is not None:
            await after_start(seeder)
        await _wait_seeding(seeder, content, encryption == "require", ready_timeout)
    except BaseException:
        await seeder.stop(grace=2.0)
        raise
    seeder.ready_after = time.monotonic() - seeder.started
    return seeder


async def _wait_seeding(seeder: RealSeeder, content: Content, encrypted: bool, timeout: float) -> None:
    assert content.v1 is not None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last = "no answer yet"
    while True:
        if seeder.process.returncode is not None:
            raise SeederError(f"{seeder.kind} exited with {seeder.process.returncode}:\n{seeder.log_tail()}")
        try:
            have = await claimed_pieces(seeder.ip, seeder.port, content.v1, content.num_pieces,
                                        encrypted=encrypted, timeout=5.0)
            if len(have) == content.num_pieces:
                return
            last = f"claims {len(have)}/{content.num_pieces} pieces"
        except ProbeError as e:
            last = str(e)
        if loop.time() > deadline:
            raise SeederError(f"{seeder.kind} on {seeder.ip}:{seeder.port} not seeding after {timeout:.0f} s "
                              f"({last}):\n{seeder.log_tail()}")
        await asyncio.sleep(0.25)


_BUILDERS: dict[Kind, Callable[[cc.Spec], cc.Launch]] = {
    "transmission": cc.transmission, "aria2": cc.aria2, "rtorrent": cc.rtorrent, "qbittorrent": cc.qbittorrent,
}
