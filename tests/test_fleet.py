"""Several nodes as one service, with real daemon processes: one node per swarm however many holders
registered it, fencing after an outage longer than the lease, and drain (issue 16)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import asyncpg

from tests.daemons import Node, cli, ledger_is_whole, node_config, register, schema_ready
from tests.helpers import wait_for_async
from tests.pgproxy import PgProxy
from tracker_watch.demo.swarm import LocalSwarm


async def test_two_holders_of_one_torrent_one_node_joins(tmp_path: Path, pg_dsn: str, schema: str,
                                                         conn: asyncpg.Connection, local_swarm: LocalSwarm) -> None:
    nodes = [Node(node_config(tmp_path, pg_dsn, schema, f"n{i}", f"127.0.0.{41 + i}",
                          node={"lease_ttl_s": 6.0, "heartbeat_s": 1.0}), tmp_path / f"n{i}.log") for i in range(3)]
    for n in nodes:
        await n.start()
    try:
        await schema_ready(conn)
        assert local_swarm.content.v1 is not None
        ids = [await register(conn, local_swarm.content.v1, holder, [local_swarm.tracker.url])
               for holder in ("Studio A", "Studio B", "Studio C")]
        key = local_swarm.content.v1.hex()

        async def both_holders_have_evidence() -> bool:
            rows = await conn.fetch("SELECT DISTINCT target_id FROM observations WHERE grade = 'verified'")
            return {r["target_id"] for r in rows} == set(ids)
        await wait_for_async(both_holders_have_evidence, timeout=90)
        joined = [n for n in nodes if key in n.watching()]
        assert len(joined) == 1  # one node in the swarm, however many holders registered it
        assert all(key not in n.watching() for n in nodes if n not in joined)
        assert [r["node"] for r in await conn.fetch("SELECT DISTINCT node FROM observations")] == \
            [joined[0].config.stem]  # and every holder's evidence comes from that one node
        assert await conn.fetchval("SELECT count(*) FROM swarm_leases WHERE expires_at > now()") == 1
        for n in nodes:
            assert await n.signal(signal.SIGTERM) == 0
    finally:
        for n in nodes:
            await n.kill()
    await ledger_is_whole(conn)


async def test_an_outage_of_twice_the_ttl_never_has_two_nodes_writing_for_one_swarm(
        tmp_path: Path, pg_dsn: str, schema: str, conn: asyncpg.Connection, proxy: PgProxy,
        local_swarm: LocalSwarm) -> None:
    ttl = 6.0
    fast = {"node": {"lease_ttl_s": ttl, "heartbeat_s": 1.0}, "collector": {"flush_interval_s": 0.2,
                                                                             "reobserve_s": 1.0}}
    cut = Node(node_config(tmp_path, proxy.dsn, schema, "cut", "127.0.0.51", **fast), tmp_path / "cut.log")
    other = Node(node_config(tmp_path, pg_dsn, schema, "other", "127.0.0.52", **fast), tmp_path / "other.log")
    await cut.start()
    try:
        await schema_ready(conn)
        assert local_swarm.content.v1 is not None
        swarm = local_swarm.content.v1
        for holder in ("Studio A", "Studio B"):
            await register(conn, swarm, holder, [local_swarm.tracker.url])

        async def observed_by(node: str) -> bool:
            return bool(await conn.fetchval("SELECT count(*) FROM observations WHERE node = $1", node))
        await wait_for_async(lambda: observed_by("cut"), timeout=60)
        await other.start()  # one swarm, two nodes: "cut" keeps it (its fair share), "other" idles

        async def other_alive() -> bool:
            return bool(await conn.fetchval("SELECT count(*) FROM nodes WHERE name = 'other'"))
        await wait_for_async(other_alive, timeout=60)
        await proxy.down()  # "cut" loses the database for twice the TTL; "other" does not
        down_at = time.monotonic()
        await wait_for_async(lambda: observed_by("other"), timeout=60)  # it took the swarm over, and watches
        await asyncio.sleep(max(0.0, 2 * ttl - (time.monotonic() - down_at)))
        assert cut.events("leases_fenced")  # it stopped on its own, the database being away
        await proxy.up()

        async def cut_spool_written() -> bool:  # every observation "cut" made before it stopped is stored
            return await conn.fetchval("SELECT spool_records FROM nodes WHERE name = 'cut'") == 0 and \
                len(cut.events("leases_changed")) > 1
        await wait_for_async(cut_spool_written, timeout=60)
        assert swarm.hex() not in cut.watching()  # it found its lease taken and stayed out
        terms = await conn.fetch("SELECT epoch, node, acquired_at, ended_at FROM lease_terms WHERE swarm = $1 "
                                 "ORDER BY epoch", swarm)
        assert [(t["epoch"], t["node"]) for t in terms] == [(1, "cut"), (2, "other")]
        # every observation of either node lies inside one of its own terms: none of "cut" after "other" began
        outside = await conn.fetchval("""
            SELECT count(*) FROM observations o WHERE NOT EXISTS (
                SELECT 1 FROM lease_terms t WHERE t.swarm = o.infohash_v1 AND t.node = o.node
                  AND o.observed_at >= t.acquired_at AND (t.ended_at IS NULL OR o.observed_at < t.ended_at))""")
        assert outside == 0
        last_cut = await conn.fetchval("SELECT max(observed_at) FROM observations WHERE node = 'cut'")
        first_other = await conn.fetchval("SELECT min(observed_at) FROM observations WHERE node = 'other'")
        assert last_cut < terms[1]["acquired_at"] <= first_other
        assert not cut.events("observation_dropped")
        for n in (cut, other):
            assert await n.signal(signal.SIGTERM) == 0
    finally:
        for n in (cut, other):
            await n.kill()
    await ledger_is_whole(conn)


async def test_drain_moves_every_swarm_within_one_heartbeat(tmp_path: Path, pg_dsn: str, schema: str,
                                                           conn: asyncpg.Connection) -> None:
    # heartbeats ten minutes apart: none falls inside the test after the start-up one, so whatever moves
    # moves within one heartbeat by construction, woken by the drain itself (no timed assertion needed)
    beat = {"node": {"lease_ttl_s": 1800.0, "heartbeat_s": 600.0}}
    nodes = [Node(node_config(tmp_path, pg_dsn, schema, f"n{i}", f"127.0.0.{61 + i}", **beat), tmp_path / f"n{i}.log")
             for i in range(2)]
    for n in nodes:
        await n.start()
    try:
        await schema_ready(conn)

        async def both_up() -> bool:
            return bool(await conn.fetchval("SELECT count(*) FROM nodes") == 2)
        await wait_for_async(both_up, timeout=60)
        keys = {os.urandom(20) for _ in range(6)}
        async with conn.transaction():  # one new revision: both nodes beat once and split the six swarms
            for key in keys:
                await register(conn, key, "Studio A")
                await register(conn, key, "Studio B")
        every = {k.hex() for k in keys}

        async def split(a: int, b: int) -> bool:
            return (len(nodes[0].watching()), len(nodes[1].watching())) == (a, b) and \
                nodes[0].watching() | nodes[1].watching() == every
        await wait_for_async(lambda: split(3, 3), timeout=60)
        changes_before = len(nodes[0].events("leases_changed"))
        started = time.monotonic()
        result = cli(nodes[0].config, "node", "drain", "n0")
        assert result.returncode == 0, result.stderr
        await wait_for_async(lambda: split(0, 6), timeout=120)
        print(f"drain moved 6 swarms in {time.monotonic() - started:.1f} s (heartbeat 600 s)")
        assert [e["released"] for e in nodes[0].events("leases_changed")[changes_before:]] == [3]
        listing = cli(nodes[0].config, "nodes")
        assert listing.returncode == 0, listing.stderr
        assert [line.split()[:2] for line in listing.stdout.splitlines()[1:]] == [["n0", "drained"], ["n1", "alive"]]
        assert nodes[0].proc is not None
        assert nodes[0].proc.returncode is None  # idle, not stopped
        assert await nodes[0].signal(signal.SIGTERM) == 0  # a restart keeps it drained ...
        await nodes[0].start()
        await wait_for_async(lambda: _started_twice(nodes[0]), timeout=60)
        assert nodes[0].watching() == set()
        assert cli(nodes[0].config, "node", "undrain", "n0").returncode == 0  # ... until it is undrained
        await wait_for_async(lambda: split(3, 3), timeout=120)
        for n in nodes:
            assert await n.signal(signal.SIGTERM) == 0
    finally:
        for n in nodes:
            await n.kill()


async def _started_twice(node: Node) -> bool:
    return len(node.events("daemon_started")) == 2
