"""libtorrent holds every swarm setting at the top of its configured range: nothing wraps or is dropped.

Before the ranges, alert_queue_size = 2**31 was stored as -2**31 and 2**40 as 0, and
max_peers_per_swarm >= 2**31 raised in add_torrent_params.
"""

from __future__ import annotations

import dataclasses
import tempfile

import libtorrent as lt

from tracker_watch.config import SwarmSettings, settings_from_mapping
from tracker_watch.swarm.settings import LISTEN_BACKLOG, lowered_settings, new_session, session_settings


def _maxed() -> SwarmSettings:
    top = {f.name: f.metadata["max"] for f in dataclasses.fields(SwarmSettings) if "max" in f.metadata}
    return settings_from_mapping({"swarm": {**top, "listen_interfaces": ["127.0.0.2:0"],
                                            "outgoing_interfaces": ["127.0.0.2"], "dht_enabled": False}}).swarm


def test_libtorrent_holds_every_swarm_setting_at_its_maximum() -> None:
    s = _maxed()
    pack = session_settings(s, user_agent="test")
    session = new_session(pack)
    lowered = lowered_settings(pack, session)
    # only the open-file limit may lower a value, and then visibly (the engine logs it), never wrapping
    assert set(lowered) <= {"connections_limit"}
    for asked, held in lowered.values():
        assert 0 < held < asked
    params = lt.add_torrent_params()
    params.info_hashes = lt.info_hash_t(lt.sha1_hash(b"\x01" * 20))
    params.save_path = tempfile.mkdtemp(prefix="tw-limits-")
    params.max_connections = s.max_peers_per_swarm
    handle = session.add_torrent(params)
    assert handle.max_connections() == s.max_peers_per_swarm
    session.remove_torrent(handle)


def test_lowered_settings_reports_what_libtorrent_changed() -> None:
    pack = session_settings(SwarmSettings(listen_interfaces=["127.0.0.2:0"], outgoing_interfaces=["127.0.0.2"],
                                          dht_enabled=False), user_agent="test")
    session = new_session(pack)
    assert lowered_settings(pack, session) == {}
    assert lowered_settings({**pack, "connection_speed": 7}, session) == {
        "connection_speed": (7, pack["connection_speed"])}


def test_the_listen_backlog_holds_a_burst_of_peers() -> None:
    """libtorrent's default backlog is 5: 300 simulated peers dialling at once lost ~5 % of their connections
    until their next announce. The session is asked for, and holds, LISTEN_BACKLOG."""
    pack = session_settings(SwarmSettings(listen_interfaces=["127.0.0.2:0"], outgoing_interfaces=["127.0.0.2"],
                                          dht_enabled=False), user_agent="test")
    session = new_session(pack)
    assert session.get_settings()["listen_queue_size"] == LISTEN_BACKLOG >= 256
