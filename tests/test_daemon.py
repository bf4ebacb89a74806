"""End to end: the real daemon (PostgreSQL, libtorrent, our tracker client) on a local swarm."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.conftest import SettingsFactory
from tests.helpers import wait_for, wait_for_async
from tests.swarm.test_zero_upload import LEECHER_IP, connected_peer, leech_only_from
from tracker_watch.config import Settings
from tracker_watch.daemon import Daemon
from tracker_watch.demo.run import PROBE_IP
from tracker_watch.demo.swarm import DECOY_IP, DECOY_PORT, LocalSwarm
from tracker_watch.domain.targets import parse_target
from tracker_watch.ledger.observations import ObservationStore
from tracker_watch.ledger.targets import TargetStore

GRADE_RANK = {"listed": 0, "handshake": 1, "advertised": 2, "verified": 3}


@pytest.fixture
async def daemon(make_settings: SettingsFactory) -> AsyncIterator[Daemon]:
    d = Daemon(make_settings())
    await d.start()
    yield d
    await d.stop()


async def by_peer(d: Daemon) -> dict[tuple[str, int], Any]:
    return {(r["ip"], r["port"]): r for r in await ObservationStore(d.db.pool).latest_by_peer()}


async def register_magnet(d: Daemon, swarm: LocalSwarm, holder: str = "Studio") -> int:
    row, _ = await TargetStore(d.db.pool).register(parse_target(swarm.content.magnet([swarm.tracker.url])),
                                                   holder, "Film", actor="test")
    return row.id


async def test_magnet_to_evidence(daemon: Daemon, local_swarm: LocalSwarm) -> None:
    target = await register_magnet(daemon, local_swarm)
    seeders = {(s.ip, s.port) for s in local_swarm.peers}

    async def every_seeder_seen() -> bool:
        rows = await by_peer(daemon)
        return all(p in rows and GRADE_RANK[rows[p]["grade"]] >= GRADE_RANK["advertised"] for p in seeders) \
            and (DECOY_IP, DECOY_PORT) in rows

    await wait_for_async(every_seeder_seen, timeout=60)
    rows = await by_peer(daemon)
    for peer in seeders:
        assert rows[peer]["target_id"] == target
        assert rows[peer]["pieces_advertised"] == local_swarm.content.num_pieces
        assert rows[peer]["source"] == "tracker"
        assert "libtorrent" in rows[peer]["client"]
    decoy = rows[(DECOY_IP, DECOY_PORT)]
    assert decoy["grade"] == "listed"  # a tracker named it; nothing more, ever
    assert decoy["pieces_advertised"] is None
    # metadata fetched from the swarm and stored with the target
    stored = await TargetStore(daemon.db.pool).get(target)
    assert stored is not None
    assert stored.num_pieces == local_swarm.content.num_pieces
    assert stored.name == local_swarm.content.name
    # every observation row carries the evidence fields
    obs = await daemon.db.pool.fetch("SELECT * FROM observations WHERE host(ip) = $1", local_swarm.peers[0].ip)
    assert all(o["node"] == "demo" and o["version"].startswith("tracker-watch/") for o in obs)
    assert all(o["infohash_v1"] == local_swarm.content.v1 for o in obs)
    assert any(o["peer_id"] and str(o["our_ip"]) in ("127.0.0.2", PROBE_IP) for o in obs)
    # and the monitor uploaded nothing, also to a leecher that wants every piece from it
    assert daemon.engine is not None
    swarm = daemon.engine.swarms[(local_swarm.content.v1 or b"").hex()]
    session, leecher = await leech_only_from(("127.0.0.2", daemon.engine.listen_port()), local_swarm.content.torrent)
    try:
        # the session holds no payload in probe mode (nothing to be interested in), so wait for the connection
        await wait_for(lambda: connected_peer(swarm.handle, LEECHER_IP), timeout=30)
        await asyncio.sleep(5)
        assert leecher.status().total_payload_download == 0
    finally:
        session.pause()
    assert daemon.engine.uploaded_payload_bytes() == 0
    assert daemon.engine.upload_tripwire == 0


async def test_restart_resumes_targets_with_their_metadata(make_settings: SettingsFactory,
                                                           local_swarm: LocalSwarm) -> None:
    settings = make_settings()
    first = Daemon(settings)
    await first.start()
    target = await register_magnet(first, local_swarm)
    await wait_for_async(lambda: _has_metadata(first, target), timeout=60)
    await first.stop()

    second = Daemon(settings)
    await second.start()  # start() returns once every active target runs
    try:
        assert second.engine is not None
        key = (local_swarm.content.v1 or b"").hex()
        assert key in second.engine.swarms
        assert second.engine.swarms[key].meta is not None  # re-added from stored metadata, no fetch needed
        before = await ObservationStore(second.db.pool).count()
        await wait_for_async(lambda: _count_above(second, before), timeout=60)
    finally:
        await second.stop()


async def _has_metadata(d: Daemon, target: int) -> bool:
    row = await TargetStore(d.db.pool).get(target)
    return row is not None and row.info is not None


async def _count_above(d: Daemon, n: int) -> bool:
    return await ObservationStore(d.db.pool).count() > n


async def test_paused_target_leaves_the_engine(daemon: Daemon, local_swarm: LocalSwarm) -> None:
    target = await register_magnet(daemon, local_swarm)
    key = (local_swarm.content.v1 or b"").hex()
    assert daemon.engine is not None
    await wait_for(lambda: key in daemon.engine.swarms, timeout=10)  # type: ignore[union-attr]
    await TargetStore(daemon.db.pool).set_status(target, "paused", actor="test")
    await wait_for(lambda: key not in daemon.engine.swarms, timeout=10)  # type: ignore[union-attr]


def monitor_listed(d: Daemon, swarm: LocalSwarm) -> set[tuple[str, int]]:
    """The monitor's identities (the session's and the verifier's) the swarm's tracker lists now."""
    assert d.engine is not None
    ours = {("127.0.0.2", d.engine.listen_port()), (PROBE_IP, d.engine.announce_port())}
    peers = local_swarm_peers(swarm)
    return ours & peers


def local_swarm_peers(swarm: LocalSwarm) -> set[tuple[str, int]]:
    s = swarm.tracker.swarms.get(swarm.content.v1 or b"")
    return set(s.peers) if s is not None else set()


async def test_the_tracker_forgets_a_monitor_that_stops_watching(make_settings: SettingsFactory,
                                                                  local_swarm: LocalSwarm) -> None:
    """Paused, or the node stopped: event=stopped for both identities, so the tracker no longer hands a dead
    address to the swarm's peers and to the node that takes the swarm over (they listed it for 120 s)."""
    d = Daemon(make_settings())
    await d.start()
    try:
        target = await register_magnet(d, local_swarm)
        await wait_for(lambda: len(monitor_listed(d, local_swarm)) == 2, timeout=30)
        await TargetStore(d.db.pool).set_status(target, "paused", actor="test")
        await wait_for(lambda: not monitor_listed(d, local_swarm), timeout=30)
        await TargetStore(d.db.pool).set_status(target, "active", actor="test")
        await wait_for(lambda: len(monitor_listed(d, local_swarm)) == 2, timeout=30)
        before = monitor_listed(d, local_swarm)
    finally:
        await d.stop()
    assert not before & local_swarm_peers(local_swarm)


def _write_config(tmp_path: Path, settings: Settings, flush_s: float) -> Path:
    path = tmp_path / "tw.toml"
    path.write_text(f"""
[node]
name = "proc"
state_dir = "{tmp_path / 'proc-state'}"
[database]
dsn = "{settings.database.dsn}"
schema = "{settings.database.schema}"
[log]
format = "json"
level = "info"
[swarm]
listen_interfaces = ["127.0.0.2:0"]
outgoing_interfaces = ["127.0.0.2"]
dht_enabled = false
peer_refresh_s = 2.0
payload_dir = "{tmp_path / 'payload'}"
allowed_networks = ["127.0.0.0/8"]
[trackers]
min_interval_s = 2.0
max_interval_s = 4.0
[collector]
batch_size = 100000
flush_interval_s = {flush_s}
[daemon]
target_poll_s = 0.5
""")
    return path


async def test_sigterm_stops_within_grace_and_flushes_everything(make_settings: SettingsFactory,
                                                                 local_swarm: LocalSwarm, tmp_path: Path) -> None:
    settings = make_settings()
    # a password in the DSN (the test server trusts any): it must never reach the logs
    dsn = settings.database.dsn.replace("postgres:@", "postgres@").replace("postgres@", "postgres:s3cret-pw@", 1)
    settings = make_settings(database={"dsn": dsn})
    config = _write_config(tmp_path, settings, flush_s=3600)  # nothing is written before the stop
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_WATCH_")}
    log_path = tmp_path / "daemon.log"
    with log_path.open("wb") as log_file:
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "tracker_watch", "--config", str(config),
                                                    "run", stdout=log_file, stderr=subprocess.STDOUT, env=env)
    try:
        conn = await asyncpg.connect(settings.database.dsn, server_settings={"search_path": settings.database.schema})
        try:
            await wait_for_async(lambda: _table_ready(conn), timeout=60)
            await _register_with_sql(conn, local_swarm)
            # observe until every seeder is proven (its log line), all held in memory: nothing is written yet
            seeders = {s.ip for s in local_swarm.peers}
            await wait_for(lambda: _verified_in_log(log_path) >= seeders, timeout=60)
            assert await conn.fetchval("SELECT count(*) FROM observations") == 0
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(proc.wait(), 15)
            stopped_in = time.monotonic() - started
            assert code == 0
            assert stopped_in < 10.0  # the configured grace period (a deadline, not a benchmark)
            rows = await conn.fetch("SELECT DISTINCT host(ip) AS ip, grade FROM observations")
            assert {r["ip"] for r in rows} >= {s.ip for s in local_swarm.peers} | {DECOY_IP}
        finally:
            await conn.close()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    out = log_path.read_text()
    assert "s3cret-pw" not in out
    assert "postgres:***@" in out  # the DSN is logged redacted
    events = [json.loads(line)["event"] for line in out.splitlines() if line.startswith("{")]
    assert events.index("database_ready") < events.index("daemon_started") < events.index("daemon_stopping")
    assert events[-1] == "daemon_stopped"
    assert "writer_process_started" in events  # the writer process's log lines reach the daemon's stdout
    stopped = json.loads(out.splitlines()[-1])
    assert stopped["unwritten"] == 0
    assert stopped["written"] > 0


def _verified_in_log(path: Path) -> set[str]:
    """The peers the daemon's JSON log says it verified."""
    out = set()
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{") and '"verify_done"' in line:
            try:
                entry = json.loads(line)
            except ValueError:  # the line being written
                continue
            if entry.get("verified") is True:
                out.add(str(entry["peer"]).rsplit(":", 1)[0])
    return out


async def _table_ready(conn: asyncpg.Connection) -> bool:
    return bool(await conn.fetchval("SELECT to_regclass('targets') IS NOT NULL"))


async def _register_with_sql(conn: asyncpg.Connection, swarm: LocalSwarm) -> None:
    holder = await conn.fetchval("INSERT INTO rights_holders (name) VALUES ('S') RETURNING id")
    work = await conn.fetchval("INSERT INTO works (holder_id, title) VALUES ($1, 'F') RETURNING id", holder)
    await conn.execute("INSERT INTO targets (work_id, infohash_v1, input_kind, trackers) VALUES ($1, $2, 'magnet', $3)",
                       work, swarm.content.v1, [swarm.tracker.url])
