"""A magnet's metadata that arrives from peers while the database is away (tracker_watch/pending_metadata.py):
kept in the state directory and stored with the target once the database is back — by the running node,
or by the next start of a node stopped meanwhile. Stored once, and as fetched."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import SettingsFactory
from tests.helpers import wait_for, wait_for_async
from tests.pgproxy import PgProxy, serving
from tracker_watch.config import Settings
from tracker_watch.daemon import Daemon
from tracker_watch.demo.swarm import LocalSwarm
from tracker_watch.domain.evidence import Source
from tracker_watch.domain.targets import parse_target
from tracker_watch.ledger.targets import TargetStore


@pytest.fixture
async def proxy(pg_dsn: str) -> AsyncIterator[PgProxy]:
    async with serving(pg_dsn) as p:
        yield p


def _settings(make_settings: SettingsFactory, proxy: PgProxy) -> Settings:
    # an outage shorter than the lease: the node keeps its swarms (and fetches metadata) throughout
    return make_settings(database={"dsn": proxy.dsn, "write_timeout_s": 3.0}, node={"lease_ttl_s": 120.0})


async def _fetch_while_away(daemon: Daemon, proxy: PgProxy, swarm: LocalSwarm) -> tuple[int, str]:
    """Register a magnet that names no tracker, cut the database, then hand the node the seeders."""
    engine = daemon.engine
    assert engine is not None
    row, _ = await TargetStore(daemon.db.pool).register(parse_target(swarm.content.magnet([])), "Studio", "Film",
                                                        actor="test")
    await wait_for(lambda: row.key in engine.swarms, timeout=30)
    await proxy.down()
    for seeder in swarm.peers:
        engine.add_peer(row.key, (seeder.ip, seeder.port), Source.TRACKER)
    await wait_for(lambda: engine.swarms[row.key].meta is not None, timeout=60)
    return row.id, row.key


async def _stored(pool: asyncpg.Pool, target: int, swarm: LocalSwarm) -> None:
    row = await pool.fetchrow("SELECT info, num_pieces, metadata_at FROM targets WHERE id = $1", target)
    assert row is not None
    assert bytes(row["info"]) == parse_target(swarm.content.torrent).info
    assert row["metadata_at"] is not None
    assert await pool.fetchval("SELECT count(*) FROM targets WHERE info IS NOT NULL") == 1


async def test_metadata_fetched_during_an_outage_is_stored_when_the_database_is_back(
        make_settings: SettingsFactory, proxy: PgProxy, local_swarm: LocalSwarm) -> None:
    daemon = Daemon(_settings(make_settings, proxy))
    await daemon.start()
    try:
        target, key = await _fetch_while_away(daemon, proxy, local_swarm)
        kept = daemon.settings.node.state_dir / "pending-metadata" / f"{key}.json"
        assert kept.exists()  # on disk before any attempt to store it
        await proxy.up()

        async def has_info() -> bool:
            try:
                return bool(await daemon.db.pool.fetchval("SELECT info IS NOT NULL FROM targets WHERE id = $1",
                                                          target))
            except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError):
                return False  # the pool's connections cut by the outage are replaced as they are used
        await wait_for_async(has_info, timeout=90)
        await _stored(daemon.db.pool, target, local_swarm)
        await wait_for(lambda: not kept.exists(), timeout=10)
        assert not daemon.metadata.pending
    finally:
        await daemon.stop()


async def test_metadata_kept_by_a_node_stopped_during_the_outage_is_stored_at_its_next_start(
        make_settings: SettingsFactory, proxy: PgProxy, local_swarm: LocalSwarm, pg_dsn: str, schema: str) -> None:
    settings = _settings(make_settings, proxy)
    daemon = Daemon(settings)
    await daemon.start()
    try:
        target, key = await _fetch_while_away(daemon, proxy, local_swarm)
    finally:
        await daemon.stop()
    kept: Path = settings.node.state_dir / "pending-metadata" / f"{key}.json"
    assert kept.exists()
    await proxy.up()
    again = Daemon(settings)  # nobody hands it the seeders this time: only the kept copy has the metadata
    await again.start()
    try:
        await wait_for(lambda: not kept.exists(), timeout=60)
        await _stored(again.db.pool, target, local_swarm)
    finally:
        await again.stop()
