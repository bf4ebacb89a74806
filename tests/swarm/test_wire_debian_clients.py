"""probe() against real clients from Debian: aria2c and transmission-daemon seeding on loopback, with and
without required encryption. Skipped when a binary is absent (`apt-get install aria2 transmission-daemon`).

The torrent has no trackers and DHT, LPD, PEX, uTP and port mapping are off: nothing leaves loopback.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import libtorrent as lt
import pytest

from tests.helpers import wait_for
from tests.swarm.wire_peers import FAST, PEER_ID, PROBE_IP, content
from tracker_watch.swarm.wire import ProbeResult, Reason, probe


@dataclass
class Daemon:
    ip: str
    port: int
    torrent: bytes
    proc: asyncio.subprocess.Process
    log: Path

    async def probe(self, index: int, encryption: str, local_ip: str = PROBE_IP,
                    peer_id: bytes = PEER_ID) -> ProbeResult:
        ti = lt.torrent_info(self.torrent)
        return await probe(self.ip, self.port, bytes(ti.info_hashes().v1.to_bytes()), peer_id, index,
                           ti.piece_size(index), bytes(ti.hash_for_piece(index)), num_pieces=ti.num_pieces(),
                           local_ip=local_ip, encryption=encryption, timeouts=FAST)  # type: ignore[arg-type]


def free_port(ip: str) -> int:
    with socket.socket() as s:
        s.bind((ip, 0))
        port: int = s.getsockname()[1]
        return port


async def start(argv: list[str], ip: str, port: int, torrent: bytes, base: Path, ready: str) -> Daemon:
    log = base / "log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(*argv, stdout=out, stderr=asyncio.subprocess.STDOUT)
    daemon = Daemon(ip=ip, port=port, torrent=torrent, proc=proc, log=log)
    # seeding starts once it has checked the data and listens; both show in its log
    await wait_for(lambda: ready in log.read_text(errors="replace") or proc.returncode is not None, timeout=60)
    assert proc.returncode is None, log.read_text(errors="replace")
    return daemon


async def aria2(ip: str, crypto: bool) -> Daemon:
    c = await content("v1")
    base = Path(tempfile.mkdtemp(prefix="tw-aria2-"))
    (base / "t.torrent").write_bytes(c.torrent)
    port = free_port(ip)
    argv = ["aria2c", "--seed-ratio=0.0", "--check-integrity=true", f"--listen-port={port}", f"--interface={ip}",
            f"--dir={c.data_dir}", "--enable-dht=false", "--enable-dht6=false", "--bt-enable-lpd=false",
            "--enable-peer-exchange=false", "--summary-interval=0", "--console-log-level=notice",
            f"--stop-with-process={os.getpid()}",  # never outlive a killed test run
            f"--bt-require-crypto={'true' if crypto else 'false'}", str(base / "t.torrent")]
    if crypto:
        argv.insert(-1, "--bt-min-crypto-level=arc4")
    return await start(argv, ip, port, c.torrent, base, "listening on TCP port")


async def transmission(ip: str, crypto: bool) -> Daemon:
    c = await content("v1")
    base = Path(tempfile.mkdtemp(prefix="tw-transmission-"))
    (base / "conf").mkdir()
    (base / "watch").mkdir()
    port = free_port(ip)
    settings = {"bind-address-ipv4": ip, "bind-address-ipv6": "::1", "peer-port": port,
                "peer-port-random-on-start": False, "rpc-enabled": False, "dht-enabled": False, "lpd-enabled": False,
                "pex-enabled": False, "utp-enabled": False, "port-forwarding-enabled": False,
                "encryption": 2 if crypto else 0, "blocklist-enabled": False, "watch-dir": str(base / "watch"),
                "watch-dir-enabled": True, "download-dir": str(c.data_dir), "ratio-limit-enabled": False,
                "message-level": 3}
    (base / "conf" / "settings.json").write_text(json.dumps(settings))
    (base / "watch" / "t.torrent").write_bytes(c.torrent)
    argv = ["transmission-daemon", "-f", "-g", str(base / "conf")]
    return await start(argv, ip, port, c.torrent, base, "Verification is done")


OTHER_IPS = ("127.0.0.109", "127.0.0.110")
OTHER_PEER_ID = b"-TW0001-" + bytes(reversed(PEER_ID[8:]))
CLIENTS = {"aria2c": (aria2, "127.0.0.105"), "transmission-daemon": (transmission, "127.0.0.107")}


@pytest.fixture(params=[(name, crypto) for name in CLIENTS for crypto in (False, True)],
                ids=lambda p: f"{p[0]}-{'crypto' if p[1] else 'plain'}")
async def daemon(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Daemon, bool]]:
    name, crypto = request.param
    if shutil.which(name) is None:
        pytest.skip(f"{name} is not installed")
    factory, ip = CLIENTS[name]
    d = await factory(ip if not crypto else ip[:-1] + str(int(ip[-1]) + 1), crypto)
    yield d, crypto
    d.proc.terminate()
    await d.proc.wait()


async def test_probe_verifies_a_piece_from_a_debian_client(daemon: tuple[Daemon, bool]) -> None:
    d, crypto = daemon
    last = lt.torrent_info(d.torrent).num_pieces() - 1
    # two probes at once: a whole piece and the short last one. From two addresses of ours (Transmission
    # refuses a second connection from an address, and a new one until it has reaped the previous) and
    # with two peer ids (aria2 drops a connection whose peer id it already has connected)
    r, r_last = await asyncio.gather(d.probe(1, "require" if crypto else "plaintext"),
                                     d.probe(last, "prefer", local_ip=OTHER_IPS[0], peer_id=OTHER_PEER_ID))
    assert (r.verified, r.reason) == (True, None), (r.detail, d.log.read_text(errors="replace")[-2000:])
    assert (r_last.verified, r_last.reason) == (True, None), r_last.detail
    assert r.encrypted == crypto
    assert r.client is not None
    assert r.client.split("/")[0].split(" ")[0] in ("aria2", "Transmission")
    assert r.pieces_advertised == last + 1
    if crypto:  # and a plaintext handshake is turned away
        assert (await d.probe(0, "plaintext", local_ip=OTHER_IPS[1])).reason is Reason.HANDSHAKE_REFUSED
