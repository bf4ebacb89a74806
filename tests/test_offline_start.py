"""A node that starts while PostgreSQL does not answer: it monitors from its local copy, spools, and when the
database returns it reconciles (yields what another node took meanwhile) and stores every observation once."""

from __future__ import annotations

import signal
from pathlib import Path

import asyncpg

from tests.daemons import Node, add_target, ledger_is_whole, node_config, schema_ready
from tests.helpers import wait_for_async
from tests.pgproxy import PgProxy
from tracker_watch.demo.swarm import LocalSwarm


async def _until(predicate: object, timeout: float = 60) -> None:
    async def check() -> bool:
        return bool(predicate())  # type: ignore[operator]
    await wait_for_async(check, timeout=timeout)


async def test_a_node_started_during_an_outage_monitors_and_stores_every_observation_once(
        tmp_path: Path, pg_dsn: str, schema: str, conn: asyncpg.Connection,
        proxy: PgProxy, local_swarm: LocalSwarm) -> None:
    ttl = 6.0
    fast = {"lease_ttl_s": ttl, "heartbeat_s": 1.0}
    n1 = Node(node_config(tmp_path, proxy.dsn, schema, "n1", "127.0.0.2", node=fast), tmp_path / "n1.log")
    n2 = Node(node_config(tmp_path, pg_dsn, schema, "n2", "127.0.0.3", node=fast), tmp_path / "n2.log")
    assert local_swarm.content.v1 is not None
    infohash = local_swarm.content.v1.hex()
    try:
        await n1.start()
        await schema_ready(conn)
        await add_target(conn, local_swarm.content.v1, [local_swarm.tracker.url])
        await _until(lambda: n1.watching() == {infohash})
        copy = tmp_path / "n1" / "local-copy"
        await _until(lambda: (copy / "leases").exists() and any((copy / "targets").iterdir()))
        assert await n1.signal(signal.SIGTERM) == 0  # a reboot: its leases go back, everything is written
        before = await conn.fetchval("SELECT count(*) FROM observations")

        await proxy.down()  # ... and the database is away when it comes back
        offline_from = await conn.fetchval("SELECT now()")
        await n1.start()
        await _until(lambda: len(n1.events("daemon_started")) == 2)
        started = n1.events("daemon_started")[-1]
        assert started["database"] is False
        assert started["swarms"] == 1  # monitoring from the copy, before the database answered
        assert n1.events("started_from_local_copy")[-1]["targets"] == 1
        assert n1.watching() == {infohash}
        # observations are made and wait in the spool
        await _until(lambda: any(e.get("pending", 0) > 0 for e in n1.events("batch_write_failed")), timeout=90)

        # meanwhile another node takes the target n1 released
        await n2.start()
        await _until(lambda: n2.watching() == {infohash})
        offline_until = await conn.fetchval("SELECT now()")

        await proxy.up()  # the database returns: n1 reconciles
        await _until(lambda: n1.events("database_reconnected"), timeout=90)
        await _until(lambda: n1.watching() == set())  # yielded to n2, which holds the lease
        holder = await conn.fetchval("SELECT node FROM target_leases WHERE expires_at > now()")
        assert holder == "n2"

        async def spool_written() -> bool:
            return bool(await conn.fetchval(
                "SELECT count(*) FROM observations WHERE node = 'n1' AND observed_at BETWEEN $1 AND $2",
                offline_from, offline_until))
        await wait_for_async(spool_written, timeout=60)
        seen = {r["ip"] for r in await conn.fetch(
            "SELECT DISTINCT host(ip) AS ip FROM observations WHERE node = 'n1' AND observed_at BETWEEN $1 AND $2",
            offline_from, offline_until)}
        assert set(local_swarm.seeder_ips) <= seen  # the peers were observed while the database was away
        assert await n1.signal(signal.SIGTERM) == 0
        assert await n2.signal(signal.SIGTERM) == 0
    finally:
        await n1.kill()
        await n2.kill()
    written = sum(n.events("daemon_stopped")[-1]["written"] for n in (n1, n2))
    assert all(n.events("daemon_stopped")[-1]["unwritten"] == 0 for n in (n1, n2))
    # every observation the two runs made is stored, and none twice
    assert await conn.fetchval("SELECT count(*) FROM observations") == before + written
    await ledger_is_whole(conn)
