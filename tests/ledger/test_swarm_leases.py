"""Leases per swarm on a real PostgreSQL: one node per torrent however many holders registered it, epochs
and terms, drain, the heartbeat's spool depth, local fencing, and version N beside version N+1."""

from __future__ import annotations

import asyncio
import os
from collections import defaultdict

import asyncpg

from tests.ledger import legacy_ownership
from tests.ledger.old_schema import register_target
from tracker_watch.domain.targets import parse_target
from tracker_watch.ledger import migrate
from tracker_watch.ledger.db import Database
from tracker_watch.ledger.ownership import Ownership
from tracker_watch.ledger.targets import TargetStore

V1 = "aa" * 20
V2 = "bb" * 32


def _node(pool: asyncpg.Pool, name: str, max_targets: int = 1000, ttl: float = 3.0) -> Ownership:
    return Ownership(pool, name, "tw/test", max_targets, ttl_s=ttl, heartbeat_s=0.5)


async def _settle(nodes: list[Ownership], rounds: int = 4) -> None:
    for _ in range(rounds):
        for node in nodes:
            await node.beat()


async def _register(pool: asyncpg.Pool, what: str, holder: str) -> int:
    row, _ = await TargetStore(pool).register(parse_target(what), holder, "Work", actor="test")
    return row.id


async def test_two_holders_of_one_torrent_get_one_node(db: Database) -> None:
    a_id = await _register(db.pool, V1, "Studio A")
    b_id = await _register(db.pool, V1, "Studio B")
    hybrid = await _register(db.pool, f"magnet:?xt=urn:btih:{'cc' * 20}&xt=urn:btmh:1220{V2}", "Studio A")
    v1_only = await _register(db.pool, "cc" * 20, "Studio C")  # the same hybrid, by its v1 hash alone
    nodes = [_node(db.pool, f"n{i}") for i in range(2)]
    await _settle(nodes)
    owners = {t: n.node for n in nodes for t in n.owned}
    assert set(owners) == {a_id, b_id, hybrid, v1_only}
    assert owners[a_id] == owners[b_id]  # one node joins the swarm, each holder keeps its own target
    assert owners[hybrid] == owners[v1_only]  # a hybrid counts once
    assert owners[a_id] != owners[hybrid]  # two swarms, two nodes: fair shares count swarms
    assert sorted(len(n.swarms) for n in nodes) == [1, 1]


async def test_capacity_counts_swarms(db: Database) -> None:
    for holder in ("A", "B", "C"):
        await _register(db.pool, V1, holder)
    await _register(db.pool, "dd" * 20, "A")
    small = _node(db.pool, "small", max_targets=1)
    beat = await small.beat()
    assert len(beat.swarms) == 1
    assert len(beat.owned) in (1, 3)
    assert beat.starved


async def test_every_take_bumps_the_epoch_and_opens_a_term(db: Database) -> None:
    await _register(db.pool, V1, "A")
    a, b = _node(db.pool, "a", ttl=3.0), _node(db.pool, "b", ttl=3.0)
    first = await a.beat()
    assert list(first.swarms.values()) == [1]
    await b.beat()
    assert await a.release_all() == 1
    second = await b.beat()
    assert list(second.swarms.values()) == [2]
    terms = await db.pool.fetch("SELECT epoch, node, ended_at IS NOT NULL AS ended FROM lease_terms ORDER BY epoch")
    assert [(r["epoch"], r["node"], r["ended"]) for r in terms] == [(1, "a", True), (2, "b", False)]
    await asyncio.sleep(3.2)  # b stops beating: its lease lapses and a takes over under a new epoch
    third = await a.beat()
    assert list(third.swarms.values()) == [3]
    assert await db.pool.fetchval("SELECT count(*) FROM lease_terms WHERE ended_at IS NULL") == 1


async def test_a_node_fences_itself_before_its_leases_can_be_taken(db: Database) -> None:
    ids = {await _register(db.pool, f"{i + 1:040x}", "A") for i in range(3)}
    a = Ownership(db.pool, "a", "tw/test", 100, ttl_s=3.0, heartbeat_s=1.0)
    await a.beat()
    assert a.valid() == ids
    expires = await db.pool.fetchval("SELECT min(expires_at) - now() FROM swarm_leases WHERE node = 'a'")
    await asyncio.sleep(2.05)  # ttl − heartbeat: no renewal since, so the node must stop
    assert a.valid() == frozenset()
    assert expires.total_seconds() > 2.0  # ... while the database still counts the leases as its own
    await a.beat()
    assert a.valid() == ids


async def test_drain_hands_everything_back_and_takes_nothing(db: Database) -> None:
    ids = {await _register(db.pool, f"{i + 1:040x}", "A") for i in range(6)}
    a, b = _node(db.pool, "a", ttl=30.0), _node(db.pool, "b", ttl=30.0)
    await _settle([a, b])
    assert len(a.owned) == len(b.owned) == 3
    await db.pool.execute("UPDATE nodes SET drained_at = now() WHERE name = 'a'")
    drained = await a.beat()
    assert drained.drained
    assert drained.owned == frozenset()
    assert drained.released == ids - b.owned
    beat = await b.beat()  # at once: the share of a drained node is nobody's, and no TTL to wait for
    assert beat.owned == ids
    await _settle([a, b])
    assert a.owned == frozenset()
    await db.pool.execute("UPDATE nodes SET drained_at = NULL WHERE name = 'a'")
    await _settle([a, b])
    assert len(a.owned) == len(b.owned) == 3


async def test_the_heartbeat_reports_the_spool_depth(db: Database) -> None:
    a = Ownership(db.pool, "a", "tw/test", 10, ttl_s=3.0, heartbeat_s=0.5, spool_depth=lambda: (12, 3456))
    await a.beat()
    row = await db.pool.fetchrow("SELECT spool_records, spool_bytes FROM nodes WHERE name = 'a'")
    assert row is not None
    assert (row["spool_records"], row["spool_bytes"]) == (12, 3456)


async def test_version_n_and_n_plus_1_share_out_the_swarms_during_a_rolling_upgrade(pg_dsn: str,
                                                                                      schema: str) -> None:
    """Schema N, a node of version N; then the expand migration (schema N+1) under it, a node of version N+1
    beside it; then N stops. At no point is a swarm held by two nodes, and every target is watched."""
    conn = await asyncpg.connect(pg_dsn)
    last_n = max(m.version for m in migrate.available() if m.version < 12)
    await migrate.apply(conn, schema, upto=last_n)
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=4, server_settings={"search_path": schema})
    try:
        swarms = [os.urandom(20).hex() for _ in range(8)]
        ids = {await register_target(pool, parse_target(ih), holder, "Work")  # as version N did
               for ih in swarms for holder in ("A", "B")}
        old = legacy_ownership.Ownership(pool, "old", "tw/N", 1000, ttl_s=30.0, heartbeat_s=0.5)
        await old.beat()
        assert old.owned == ids  # alone: everything
        assert await migrate.apply(conn, schema) == [m.version for m in migrate.available() if m.version > last_n]
        new = _node(pool, "new", ttl=30.0)
        for _ in range(4):
            await old.beat()  # version N's statements still run on schema N+1
            await new.beat()
            await _exclusive(pool, ids)
        await old.release_all()  # N stops (to be upgraded): N+1 takes everything at its next beat
        assert (await new.beat()).owned == ids
        await _exclusive(pool, ids)
    finally:
        await pool.close()
        await conn.close()


async def _exclusive(pool: asyncpg.Pool, ids: set[int]) -> None:
    """Every target leased, and the targets of one swarm all by one node (per-target and swarm leases alike)."""
    holders: dict[bytes, set[str]] = defaultdict(set)
    leased = set()
    for r in await pool.fetch(
            "SELECT a.target_id, a.swarm, tl.node FROM active_target_swarms a "
            "JOIN target_leases tl ON tl.target_id = a.target_id AND tl.expires_at > now() "
            "UNION SELECT a.target_id, a.swarm, l.node FROM active_target_swarms a "
            "JOIN swarm_leases l ON l.swarm = a.swarm AND l.expires_at > now()"):
        holders[bytes(r["swarm"])].add(r["node"])
        leased.add(r["target_id"])
    assert leased == ids
    assert all(len(h) == 1 for h in holders.values()), holders
