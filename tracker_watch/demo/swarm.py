"""A swarm on loopback: a tracker, libtorrent seeders on their own 127.0.0.x addresses, and a decoy.

Optionally a partial seeder (some pieces only) and a liar (claims everything, sends garbage).
The decoy only announces to the tracker (from its own address, with a port nobody listens on): the
tracker lists it like any other peer, and a monitor that trusted tracker lists would accuse it.
Used by `tracker-watch demo` and as the tests' local-swarm fixture.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import tempfile
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import libtorrent as lt

from tracker_watch.demo.liar import LIAR_IP, Liar
from tracker_watch.demo.tracker import LocalTracker
from tracker_watch.domain import tracker_proto as tp
from tracker_watch.swarm.settings import new_session

SEEDER_BASE = 11  # seeders on 127.0.0.11, .12, …
DECOY_IP = "127.0.0.66"
DECOY_PORT = 6999


@dataclass
class Content:
    name: str
    torrent: bytes
    info_hashes: Any  # lt.info_hash_t
    num_pieces: int
    piece_length: int
    data_dir: Path

    @property
    def v1(self) -> bytes | None:
        return bytes(self.info_hashes.v1.to_bytes()) if self.info_hashes.has_v1() else None

    @property
    def v2(self) -> bytes | None:
        return bytes(self.info_hashes.v2.to_bytes()) if self.info_hashes.has_v2() else None

    def magnet(self, trackers: list[str], name: bool = True) -> str:
        parts = []
        if self.v1:
            parts.append("xt=urn:btih:" + self.v1.hex())
        if self.v2:
            parts.append("xt=urn:btmh:1220" + self.v2.hex())
        if name:
            parts.append("dn=" + urllib.parse.quote(self.name))
        parts += ["tr=" + urllib.parse.quote(t, safe="") for t in trackers]
        return "magnet:?" + "&".join(parts)


def make_content(base: Path, name: str = "Demo Film (2026).mkv", size: int = 2 * 2**20,
                 piece_length: int = 64 * 1024, seed: int = 7, version: str = "hybrid") -> Content:
    """Random bytes (reproducible from `seed`) in one file, and a .torrent for them."""
    data_dir = base / "content"
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / name).write_bytes(random.Random(seed).randbytes(size))
    flags = {"v1": lt.create_torrent.v1_only, "v2": lt.create_torrent.v2_only, "hybrid": 0}[version]
    ct = lt.create_torrent(lt.list_files(str(data_dir / name)), piece_length, flags)
    lt.set_piece_hashes(ct, str(data_dir))
    torrent = lt.bencode(ct.generate())  # generate_buf() is broken in the 2.1.1 bindings
    ti = lt.torrent_info(torrent)
    return Content(name=name, torrent=torrent, info_hashes=ti.info_hashes(), num_pieces=ti.num_pieces(),
                   piece_length=piece_length, data_dir=data_dir)


def peer_session(ip: str, **extra: Any) -> Any:
    """A plain libtorrent session bound to one loopback address; nothing public, no DHT."""
    listen = f"[{ip}]:0" if ":" in ip else f"{ip}:0"
    pack = {
        "listen_interfaces": listen, "outgoing_interfaces": ip, "enable_dht": False, "enable_lsd": False,
        "enable_upnp": False, "enable_natpmp": False, "alert_mask": int(lt.alert_category.error),
        "announce_ip": ip,
    }
    pack.update(extra)
    return new_session(pack)


async def wait_listening(session: Any, timeout: float = 10.0) -> int:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (port := int(session.listen_port())) == 0:
        if loop.time() > deadline:
            raise RuntimeError("libtorrent session did not start listening")
        await asyncio.sleep(0.05)
    return port


_READY = {lt.torrent_status.states.downloading, lt.torrent_status.states.finished, lt.torrent_status.states.seeding}


async def wait_torrent_ready(handle: Any, timeout: float = 30.0) -> None:
    """Until the torrent accepts peers: add_torrent returns while libtorrent still checks its resume data (or,
    for a partial seeder, its files), and a peer that connects meanwhile is closed without an answer (a probe
    of a seeder just started failed that way on a loaded machine)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while handle.status().state not in _READY:
        if loop.time() > deadline:
            raise RuntimeError(f"torrent not ready after {timeout} s: {handle.status().state}")
        await asyncio.sleep(0.02)


@dataclass
class Seeder:
    ip: str
    session: Any
    handle: Any
    port: int = 0


@dataclass
class LocalSwarm:
    seeders: int = 3
    partial: dict[int, float] = field(default_factory=dict)  # seeder index → fraction of pieces it has
    decoy: bool = True
    liar: bool = False
    size: int = 2 * 2**20
    piece_length: int = 64 * 1024
    version: str = "hybrid"
    tracker_interval: int = 3
    # addresses: the lab makes them configurable; the demo and the tests keep the defaults
    tracker_host: str = "127.0.0.1"
    tracker_port: int = 0
    seeder_addresses: list[str] | None = None  # default: 127.0.0.11, .12, …
    seeder_settings: dict[int, dict[str, Any]] = field(default_factory=dict)  # index → extra libtorrent settings
    decoy_ip: str = DECOY_IP
    liar_ip: str = LIAR_IP
    base: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="tw-swarm-")))
    tracker: LocalTracker = field(init=False)
    content: Content = field(init=False)
    peers: list[Seeder] = field(default_factory=list)
    liar_peer: Liar | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def seeder_ips(self) -> list[str]:
        return [s.ip for s in self.peers]

    async def start(self) -> LocalSwarm:
        self.tracker = LocalTracker(host=self.tracker_host, port=self.tracker_port, interval=self.tracker_interval)
        await self.tracker.start()
        self.content = await asyncio.to_thread(make_content, self.base, size=self.size,
                                               piece_length=self.piece_length, version=self.version)
        for i in range(self.seeders):
            self.peers.append(await self._start_seeder(i))
        if self.decoy:
            self._tasks.append(asyncio.create_task(self._decoy_loop(), name="decoy"))
        if self.liar:
            hashes = [h for h in (self.content.v1, self.content.v2) if h]
            self.liar_peer = await Liar(self.content.num_pieces, hashes, self.tracker.url, ip=self.liar_ip,
                                        announce_interval=self.tracker_interval).start()
        return self

    async def _start_seeder(self, index: int) -> Seeder:
        ip = self.seeder_addresses[index] if self.seeder_addresses else f"127.0.0.{SEEDER_BASE + index}"
        session = peer_session(ip, **self.seeder_settings.get(index, {}))
        params = lt.add_torrent_params()
        params.ti = lt.torrent_info(self.content.torrent)
        params.trackers = [self.tracker.url]
        params.flags &= ~(lt.torrent_flags.auto_managed | lt.torrent_flags.paused)
        fraction = self.partial.get(index)
        if fraction is None:
            params.save_path = str(self.content.data_dir)
            params.flags |= lt.torrent_flags.seed_mode
        else:
            # a partial seeder: a copy of the file with only some pieces; libtorrent's check finds which
            own = self.base / f"partial-{index}"
            own.mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread(self._write_partial, own, fraction, index)
            params.save_path = str(own)
            params.flags |= lt.torrent_flags.upload_mode  # do not complete itself from the swarm
        handle = session.add_torrent(params)
        seeder = Seeder(ip=ip, session=session, handle=handle)
        seeder.port = await wait_listening(session)
        await wait_torrent_ready(handle)
        return seeder

    def _write_partial(self, own: Path, fraction: float, index: int) -> None:
        data = bytearray((self.content.data_dir / self.content.name).read_bytes())
        rng = random.Random(1000 + index)
        keep = set(rng.sample(range(self.content.num_pieces), max(1, int(self.content.num_pieces * fraction))))
        for piece in range(self.content.num_pieces):
            if piece not in keep:
                start = piece * self.piece_length
                data[start:start + self.piece_length] = bytes(len(data[start:start + self.piece_length]))
        (own / self.content.name).write_bytes(bytes(data))

    def partial_pieces(self, index: int) -> set[int]:
        h = self.peers[index].handle
        return {i for i in range(self.content.num_pieces) if h.have_piece(i)}

    async def _decoy_loop(self) -> None:
        """Announce the decoy's address for every infohash of the content, again and again."""
        hashes = [h[:20] for h in (self.content.v1, self.content.v2) if h]
        connector = aiohttp.TCPConnector(local_addr=(self.decoy_ip, 0))
        async with aiohttp.ClientSession(connector=connector) as http:
            while True:
                for ih in hashes:
                    req = tp.AnnounceRequest(info_hash=ih, peer_id=b"-DC0001-decoydecoy00", port=DECOY_PORT,
                                             left=0, numwant=0, key=1, event="started")
                    try:
                        async with http.get(tp.http_announce_url(self.tracker.url, req)) as resp:
                            await resp.read()
                    except aiohttp.ClientError:
                        pass
                await asyncio.sleep(self.tracker_interval)

    async def stop(self) -> None:
        if self.liar_peer is not None:
            await self.liar_peer.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        # The tracker goes first: a session's destructor holds the GIL while it waits (up to libtorrent's
        # stop_tracker_timeout, 5 s) for its "stopped" announces, so an in-process tracker could never answer
        # them; a closed port refuses them at once.
        await self.tracker.stop()
        sessions = [p.session for p in self.peers]
        self.peers.clear()
        for s in sessions:
            s.pause()
        await asyncio.to_thread(sessions.clear)
        shutil.rmtree(self.base, ignore_errors=True)
