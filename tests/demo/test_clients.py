"""Real Debian BitTorrent clients seed on their own loopback address: a libtorrent leecher on another
address downloads and hash-checks pieces from each one alone, the tracker saw each announce from the
seeder's own address, and stop() leaves no process behind."""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import libtorrent as lt
import pytest

from tests.helpers import run_process, wait_for
from tracker_watch.demo import clients
from tracker_watch.demo.probe import ProbeError, claimed_pieces
from tracker_watch.demo.swarm import Content, make_content, peer_session
from tracker_watch.demo.tracker import LocalTracker

# each test has addresses of its own in 127.0.0.150-170, so parallel runs never share a listen socket
PLAIN = {"transmission": ("127.0.0.150", "127.0.0.160"), "aria2": ("127.0.0.151", "127.0.0.161"),
         "rtorrent": ("127.0.0.152", "127.0.0.162"), "qbittorrent": ("127.0.0.153", "127.0.0.163")}
REQUIRE = {"transmission": ("127.0.0.154", "127.0.0.164"), "aria2": ("127.0.0.155", "127.0.0.165"),
           "rtorrent": ("127.0.0.156", "127.0.0.166"), "qbittorrent": ("127.0.0.157", "127.0.0.167")}
TIMEOUT = 60.0


def _skip_unless_installed(kind: clients.Kind) -> None:
    if not clients.available(kind):
        pytest.skip(f"{clients.BINARIES[kind]} is not installed (Debian package; .ci/run installs it)")


@dataclass
class Lab:
    tracker: LocalTracker
    content: Content
    workdir: Path


@pytest.fixture
async def lab() -> AsyncIterator[Lab]:
    tracker = LocalTracker(interval=2)
    await tracker.start()
    workdir = Path(tempfile.mkdtemp(prefix="tw-clients-"))
    content = make_content(workdir, size=1 << 20, piece_length=64 * 1024, version="v1")
    yield Lab(tracker, content, workdir)
    await tracker.stop()
    shutil.rmtree(workdir, ignore_errors=True)


async def _leech_one_piece(lab: Lab, seeder: clients.RealSeeder, ip: str, **settings: Any) -> None:
    """A libtorrent leecher that knows only this seeder: a verified piece can only have come from it."""
    if not seeder.utp:
        settings.setdefault("enable_outgoing_utp", False)  # skip libtorrent's uTP attempt and its timeout
    session = peer_session(ip, **settings)
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(lab.content.torrent)
    params.save_path = str(lab.workdir / f"leech-{ip}")
    params.flags &= ~(lt.torrent_flags.auto_managed | lt.torrent_flags.paused)
    handle = session.add_torrent(params)
    try:
        handle.connect_peer((seeder.ip, seeder.port))
        await wait_for(lambda: handle.status().num_pieces >= 1, timeout=TIMEOUT)
        peers = {p.ip[0] for p in handle.get_peer_info()}
        assert peers <= {seeder.ip}
        # the piece passed libtorrent's hash check (a failed one is not counted as had)
        assert handle.status().num_pieces >= 1
    finally:
        session.remove_torrent(handle)
        session.pause()


async def _announced_from_own_address(lab: Lab, seeder: clients.RealSeeder) -> None:
    assert lab.content.v1 is not None
    await wait_for(lambda: any(ih == lab.content.v1 and ip == seeder.ip and port == seeder.port
                               for ih, ip, port, _ in lab.tracker.announces), timeout=TIMEOUT)


async def _stopped_without_trace(seeder: clients.RealSeeder) -> None:
    await seeder.stop()
    assert seeder.process.returncode is not None
    assert not clients.group_alive(seeder.pid)


@pytest.mark.parametrize("kind", list(PLAIN))
async def test_a_real_client_seeds_on_its_own_address(lab: Lab, kind: clients.Kind) -> None:
    _skip_unless_installed(kind)
    ip, leecher_ip = PLAIN[kind]
    seeder = await clients.start_seeder(kind, lab.content, ip, tracker_url=lab.tracker.url, workdir=lab.workdir)
    try:
        assert (seeder.kind, seeder.ip) == (kind, ip)
        await _announced_from_own_address(lab, seeder)
        await _leech_one_piece(lab, seeder, leecher_ip)
    finally:
        await _stopped_without_trace(seeder)


@pytest.mark.parametrize("kind", list(REQUIRE))
async def test_a_client_that_requires_encryption_still_seeds_to_an_encrypting_leecher(
        lab: Lab, kind: clients.Kind) -> None:
    _skip_unless_installed(kind)
    ip, leecher_ip = REQUIRE[kind]
    seeder = await clients.start_seeder(kind, lab.content, ip, tracker_url=lab.tracker.url, workdir=lab.workdir,
                                        encryption="require")
    try:
        assert lab.content.v1 is not None
        with pytest.raises(ProbeError):  # the setting is real: a plaintext handshake is refused
            await claimed_pieces(ip, seeder.port, lab.content.v1, lab.content.num_pieces, timeout=10)
        forced = int(lt.enc_policy.forced)
        await _leech_one_piece(lab, seeder, leecher_ip, out_enc_policy=forced, in_enc_policy=forced,
                               allowed_enc_level=int(lt.enc_level.rc4))
    finally:
        await _stopped_without_trace(seeder)


_DIE_WITHOUT_STOP = """
import asyncio, os, sys
from pathlib import Path
from tracker_watch.demo import clients
from tracker_watch.demo.swarm import make_content
from tracker_watch.demo.tracker import LocalTracker

async def main() -> None:
    work = Path(sys.argv[2])
    content = make_content(work, size=256 * 1024, version="v1")
    tracker = LocalTracker()
    await tracker.start()
    seeder = await clients.start_seeder(sys.argv[1], content, "127.0.0.159", workdir=work, tracker_url=tracker.url)
    print(seeder.pid, flush=True)
    os._exit(3)  # no stop(), no cleanup: as if the test process were killed

asyncio.run(main())
"""


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"  # a zombie has exited; whoever inherited it may not reap it at once


async def test_a_seeder_dies_with_the_process_that_started_it(tmp_path: Path) -> None:
    kind = next((k for k in ("rtorrent", "aria2", "transmission", "qbittorrent") if clients.available(k)), None)
    if kind is None or shutil.which("setpriv") is None:
        pytest.skip("needs setpriv (util-linux) and one of the clients")
    code, out = await run_process(sys.executable, "-c", _DIE_WITHOUT_STOP, kind, str(tmp_path), timeout=TIMEOUT)
    assert code == 3, out
    pid = int(out.split()[-1])
    await wait_for(lambda: not _running(pid), timeout=TIMEOUT)
