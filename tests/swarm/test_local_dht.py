"""Discovery without trackers (issue 12, item 7): a local DHT of libtorrent nodes on loopback, seeders that
announce only there, and a seeder known only by PEX. A target registered by a magnet with nothing but `xt=`
into a daemon that is already running is looked up at once: its DHT seeders are verified within 30 s, and
the PEX-only seeder is found.

libtorrent never puts a node it was given as a *router* (`dht_bootstrap_nodes`, add_dht_router) into its
routing table (routing_table.cpp: "if we already have this (IP,port) [as a router], don't do anything"). A DHT
whose nodes all name each other as routers therefore never gets a single routing entry. Here the nodes learn
each other with add_dht_node (a ping; the answer makes it a routing entry), and only the monitor, which is
read-only, is told one of them as its bootstrap router.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import libtorrent as lt
import pytest

from tests.conftest import SettingsFactory
from tests.helpers import wait_for_async
from tracker_watch.daemon import Daemon
from tracker_watch.demo.swarm import Content, make_content, peer_session, wait_listening
from tracker_watch.domain.targets import parse_target
from tracker_watch.ledger.targets import TargetStore

# this module's addresses (other tests use .11-.77, .100-.120, .150-.170, .181-.188)
NODE_IPS = ["127.0.0.211", "127.0.0.212", "127.0.0.213"]  # DHT nodes without the torrent
SEEDER_IPS = ["127.0.0.214", "127.0.0.215"]  # seeders that announce only to the DHT
PEX_ONLY_IP = "127.0.0.216"  # a seeder with DHT off: only its peers can tell anyone of it
DHT = {"enable_dht": True, "dht_restrict_routing_ips": False, "dht_restrict_search_ips": False,
       "dht_announce_interval": 5, "close_redundant_connections": False,  # seeds stay connected: PEX lists them
       "dht_bootstrap_nodes": "",  # no public router (not even its DNS lookup)
       "alert_mask": int(lt.alert_category.error | lt.alert_category.dht_operation)}


async def _started(ip: str, dht: bool) -> tuple[Any, int]:
    session = peer_session(ip, **(DHT if dht else {"close_redundant_connections": False}))
    return session, await wait_listening(session)


def _seed(session: Any, content: Content) -> Any:
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(content.torrent)
    params.save_path = str(content.data_dir)
    params.flags = (params.flags | lt.torrent_flags.seed_mode) & ~(lt.torrent_flags.auto_managed
                                                                  | lt.torrent_flags.paused)
    return session.add_torrent(params)  # no tracker: the DHT (or PEX) is the only way to find it


@pytest.fixture
async def dht_swarm() -> AsyncIterator[dict[str, Any]]:
    content = await asyncio.to_thread(make_content, Path(tempfile.mkdtemp(prefix="tw-dht-")), version="v1",
                                      seed=12)
    sessions: dict[str, tuple[Any, int]] = {}
    try:
        for ip in NODE_IPS + SEEDER_IPS:
            sessions[ip] = await _started(ip, dht=True)
        sessions[PEX_ONLY_IP] = await _started(PEX_ONLY_IP, dht=False)
        for ip in NODE_IPS + SEEDER_IPS:  # everybody knows the plain nodes as routing entries, not routers
            for other in NODE_IPS:
                if other != ip:
                    sessions[ip][0].add_dht_node((other, sessions[other][1]))
        handles = {ip: _seed(sessions[ip][0], content) for ip in [*SEEDER_IPS, PEX_ONLY_IP]}
        handles[PEX_ONLY_IP].connect_peer((SEEDER_IPS[0], sessions[SEEDER_IPS[0]][1]))
        probe = sessions[NODE_IPS[-1]][0]
        v1 = content.v1
        assert v1 is not None

        async def announced() -> bool:
            """Both seeders can be found in the DHT (asked of a node, as the monitor will)."""
            for ip in SEEDER_IPS:
                handles[ip].force_dht_announce()
            probe.dht_get_peers(lt.sha1_hash(v1))
            await asyncio.sleep(1.0)
            found = {str(p[0]) for a in probe.pop_alerts() if isinstance(a, lt.dht_get_peers_reply_alert)
                     for p in a.peers()}
            return set(SEEDER_IPS) <= found

        await wait_for_async(announced, timeout=60, step=0.5)
        yield {"content": content, "router": f"{NODE_IPS[0]}:{sessions[NODE_IPS[0]][1]}"}
    finally:
        for session, _ in sessions.values():
            await asyncio.to_thread(session.pause)


async def test_a_trackerless_magnet_added_to_a_running_daemon_is_found_in_the_dht(
        make_settings: SettingsFactory, dht_swarm: dict[str, Any]) -> None:
    content: Content = dht_swarm["content"]
    assert content.v1 is not None
    daemon = Daemon(make_settings(swarm={"dht_enabled": True, "dht_bootstrap_nodes": [dht_swarm["router"]],
                                         "dht_restrict_ips": False}))
    await daemon.start()
    try:
        engine = daemon.engine
        assert engine is not None
        await wait_for_async(lambda: _true(engine.counters.get("dht.dht_nodes", 0) > 0), timeout=30)
        # the daemon already watches something, so its round-robin of DHT lookups is asleep (300 s / 1 swarm)
        store = TargetStore(daemon.db.pool)
        await store.register(parse_target("magnet:?xt=urn:btih:" + "5a" * 20), "Studio", "Other", actor="test")
        await wait_for_async(lambda: _true(len(engine.swarms) == 1))
        await asyncio.sleep(4.0)  # past the round-robin's first start (1–3 s)
        # now the target arrives, named by its infohash alone
        await store.register(parse_target(f"magnet:?xt=urn:btih:{content.v1.hex()}"), "Studio", "Film",
                             actor="test")

        async def verified() -> set[str]:
            rows = await daemon.db.pool.fetch("SELECT DISTINCT host(ip) AS ip FROM observations "
                                              "WHERE grade = 'verified'")
            return {r["ip"] for r in rows}

        # the first lookup is at once, not dht_query_interval_s (300 s) / swarms later
        await wait_for_async(lambda: _contains(verified(), set(SEEDER_IPS)), timeout=30)

        async def pex_only_found() -> bool:
            rows = await daemon.db.pool.fetch("SELECT source FROM observations WHERE host(ip) = $1", PEX_ONLY_IP)
            return any(r["source"] == "pex" for r in rows)

        await wait_for_async(pex_only_found, timeout=90)
        assert engine.uploaded_payload_bytes() == 0
    finally:
        await daemon.stop()


async def _true(value: bool) -> bool:
    return value


async def _contains(rows: Awaitable[set[str]], wanted: set[str]) -> bool:
    return wanted <= await rows
