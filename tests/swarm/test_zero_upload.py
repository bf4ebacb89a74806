"""The monitor never uploads payload, even to a loopback leecher that wants every piece it holds.

The control test proves the set-up can catch an upload: the same session settings without the
zero-upload part do upload to the same kind of leecher.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from typing import Any

import libtorrent as lt
import pytest

from tests.conftest import SettingsFactory
from tests.swarm.helpers import EngineUnderTest, wait_for
from tracker_watch.config import SwarmSettings
from tracker_watch.demo.swarm import LocalSwarm, peer_session, wait_listening
from tracker_watch.swarm.settings import ZERO_UPLOAD, new_session, session_settings

LEECHER_IP = "127.0.0.20"
REMOTE_INTERESTED = int(lt.peer_info.remote_interested)


async def leech_only_from(target: tuple[str, int], content_torrent: bytes, ip: str = LEECHER_IP) -> tuple[Any, Any]:
    """A libtorrent leecher that wants every piece and may only get them from `target`: no tracker, no PEX,
    and an IP filter that refuses everybody else (seeders learn of it through the monitor's PEX)."""
    # it keeps the connection even while it has nothing to ask yet (its files are still being checked)
    session = peer_session(ip, close_redundant_connections=False)
    only = lt.ip_filter()
    only.add_rule("0.0.0.0", "255.255.255.255", 1)
    only.add_rule(target[0], target[0], 0)
    session.set_ip_filter(only)
    await wait_listening(session)
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(content_torrent)
    params.save_path = tempfile.mkdtemp(prefix="tw-leecher-")
    params.flags = (params.flags | lt.torrent_flags.disable_pex) & ~(
        lt.torrent_flags.auto_managed | lt.torrent_flags.paused)
    handle = session.add_torrent(params)
    handle.connect_peer(target, 0)
    return session, handle


def connected_peer(handle: Any, ip: str) -> bool:
    return any(str(p.ip[0]) == ip for p in handle.get_peer_info())


def interested_peer(handle: Any, ip: str) -> bool:
    return any(str(p.ip[0]) == ip and int(p.flags) & REMOTE_INTERESTED for p in handle.get_peer_info())


@pytest.fixture
async def monitor(make_settings: SettingsFactory, local_swarm: LocalSwarm) -> AsyncIterator[EngineUnderTest]:
    eut = EngineUnderTest(make_settings(verify={"method": "session"}))  # the session holds payload only so
    await eut.engine.start()
    swarm = eut.watch_magnet(local_swarm)
    eut.feed_seeders(local_swarm, swarm.key)
    await wait_for(lambda: any(swarm.handle.have_piece(i) for i in range(local_swarm.content.num_pieces)))
    yield eut
    await eut.engine.stop()


async def test_monitor_uploads_nothing_to_an_eager_leecher(monitor: EngineUnderTest, local_swarm: LocalSwarm) -> None:
    swarm = next(iter(monitor.engine.swarms.values()))
    held = [i for i in range(local_swarm.content.num_pieces) if swarm.handle.have_piece(i)]
    endpoint = ("127.0.0.2", monitor.engine.listen_port())
    session, leecher = await leech_only_from(endpoint, local_swarm.content.torrent)
    try:
        # the leecher is connected to the monitor and wants what the monitor holds …
        for _ in range(15):
            if interested_peer(swarm.handle, LEECHER_IP):
                break
            leecher.connect_peer(endpoint, 0)  # it may hang up while its own files are checked; dial again
            await asyncio.sleep(2)
        assert interested_peer(swarm.handle, LEECHER_IP)
        await asyncio.sleep(8)  # … for long enough to have been served many blocks on loopback
        assert held
        assert leecher.status().num_peers == 1
        assert leecher.status().total_payload_download == 0
        assert monitor.engine.uploaded_payload_bytes() == 0
        assert monitor.engine.upload_tripwire == 0
    finally:
        session.pause()
        del session


async def test_control_same_settings_without_zero_upload_do_upload(local_swarm: LocalSwarm, tmp_path: Any) -> None:
    pack = session_settings(SwarmSettings(listen_interfaces=["127.0.0.3:0"], outgoing_interfaces=["127.0.0.3"],
                                          dht_enabled=False), user_agent="control")
    for key in ZERO_UPLOAD:
        del pack[key]
    control = new_session(pack)
    port = await wait_listening(control)
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(local_swarm.content.torrent)
    params.save_path = str(tmp_path)
    params.flags = (params.flags | lt.torrent_flags.default_dont_download) & ~(
        lt.torrent_flags.auto_managed | lt.torrent_flags.paused)
    params.piece_priorities = [7]
    handle = control.add_torrent(params)
    seeder = local_swarm.peers[0]
    handle.connect_peer((seeder.ip, seeder.port), 0)
    await wait_for(lambda: handle.have_piece(0))
    session, leecher = await leech_only_from(("127.0.0.3", port), local_swarm.content.torrent, ip="127.0.0.21")
    try:
        await wait_for(lambda: leecher.status().total_payload_download > 0, timeout=30)
        assert handle.status().total_payload_upload > 0
        assert leecher.status().num_peers == 1
    finally:
        session.pause()
        control.pause()
