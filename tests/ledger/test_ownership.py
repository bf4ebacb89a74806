"""Target leases on a real PostgreSQL: one owner per target, fair shares, capacity, takeover and hand-back."""

from __future__ import annotations

import asyncio
from collections import Counter

from tracker_watch.domain.targets import parse_target
from tracker_watch.ledger.db import Database
from tracker_watch.ledger.ownership import Ownership
from tracker_watch.ledger.targets import TargetStore


async def _targets(db: Database, n: int) -> set[int]:
    store = TargetStore(db.pool)
    ids = set()
    for i in range(n):
        row, _ = await store.register(parse_target(f"{i + 1:040x}"), "Holder", "Work", actor="test")
        ids.add(row.id)
    return ids


def _node(db: Database, name: str, max_targets: int = 1000, ttl: float = 3.0) -> Ownership:
    return Ownership(db.pool, name, "tw/test", max_targets, ttl_s=ttl, heartbeat_s=0.5)


async def _settle(nodes: list[Ownership], rounds: int = 4) -> None:
    for _ in range(rounds):
        for node in nodes:
            await node.beat()


async def test_every_target_has_exactly_one_owner_and_shares_are_fair(db: Database) -> None:
    ids = await _targets(db, 30)
    nodes = [_node(db, f"n{i}") for i in range(3)]
    await _settle(nodes)
    owned = [n.owned for n in nodes]
    assert set().union(*owned) == ids
    assert sum(len(o) for o in owned) == 30  # no target twice
    assert sorted(len(o) for o in owned) == [10, 10, 10]
    rows = await db.pool.fetch("SELECT node, count(*) AS n FROM target_leases WHERE expires_at > now() GROUP BY node")
    assert {r["node"]: r["n"] for r in rows} == {n.node: len(n.owned) for n in nodes}


async def test_concurrent_beats_never_take_a_target_twice(db: Database) -> None:
    ids = await _targets(db, 40)
    nodes = [_node(db, f"n{i}") for i in range(4)]
    for _ in range(3):
        await asyncio.gather(*(n.beat() for n in nodes))
    counts = Counter(t for n in nodes for t in n.owned)
    assert set(counts) == ids
    assert max(counts.values()) == 1


async def test_capacity_is_respected_and_reported(db: Database) -> None:
    await _targets(db, 12)
    # registered just now, whatever the time the beats below take on a busy machine (a never-leased target is
    # free since its registration): none has been free for two beats yet
    await db.pool.execute("UPDATE targets SET created_at = now() + interval '1 hour'")
    small = _node(db, "small", max_targets=5)
    beat = await small.beat()
    assert len(beat.owned) == 5
    assert beat.starved  # seven targets wait for a node with room
    big = _node(db, "big", max_targets=100)
    await _settle([small, big])
    assert len(big.owned) == 6  # its fair share at once ...
    # ... and what nobody else could take, once it stayed free for two beats
    await db.pool.execute("UPDATE targets SET created_at = now() - interval '1 hour'")
    await big.beat()
    assert len(small.owned) == 5
    assert len(big.owned) == 7


async def test_a_dead_nodes_targets_are_taken_after_the_ttl(db: Database) -> None:
    ids = await _targets(db, 20)
    a, b = _node(db, "a", ttl=3.0), _node(db, "b", ttl=3.0)
    await _settle([a, b])
    lost = set(b.owned)
    assert lost
    await asyncio.sleep(1.0)
    await a.beat()
    assert not (a.owned & lost)  # b's leases still run
    await asyncio.sleep(2.5)  # b stopped beating: its leases and its heartbeat lapse
    beat = await a.beat()
    assert beat.owned == ids
    # b comes back (it was only paused): it finds its old leases gone and gets a fair share again
    back = await b.beat()
    assert back.lost == lost - back.owned
    await _settle([a, b])
    assert len(a.owned) == len(b.owned) == 10


async def test_a_stopping_node_hands_its_targets_back_at_once(db: Database) -> None:
    ids = await _targets(db, 10)
    a, b = _node(db, "a", ttl=30.0), _node(db, "b", ttl=30.0)
    await _settle([a, b])
    assert await b.release_all() == 5
    beat = await a.beat()  # no waiting for a 30 s TTL
    assert beat.owned == ids


async def test_paused_targets_are_given_up(db: Database) -> None:
    ids = await _targets(db, 4)
    a = _node(db, "a")
    await a.beat()
    paused = min(ids)
    await TargetStore(db.pool).set_status(paused, "paused", actor="test")
    beat = await a.beat()
    assert beat.owned == ids - {paused}
    assert await db.pool.fetchval("SELECT count(*) FROM target_leases WHERE target_id = $1", paused) == 0


async def test_one_target_too_many_is_handed_to_the_node_one_short(db: Database) -> None:
    """Regression: a node counted as hungry only two below its share, so a fleet stuck at 11/10/9 for ever
    (three-node fault test: 8/10/12 once, on a loaded machine). It gets there when a target comes while the
    node below its share is slow: after two beats another node takes it as left behind."""
    await _targets(db, 29)
    nodes = [_node(db, f"n{i}") for i in range(3)]
    await _settle(nodes)
    assert sorted(len(n.owned) for n in nodes) == [9, 10, 10]
    row, _ = await TargetStore(db.pool).register(parse_target("f" * 40), "Holder", "Work", actor="test")
    await db.pool.execute("UPDATE targets SET created_at = now() - interval '1 hour' WHERE id = $1", row.id)
    slow = min(nodes, key=lambda n: len(n.owned))
    first = next(n for n in nodes if n is not slow)
    await first.beat()  # free for longer than two beats: taken beyond the share
    assert len(first.owned) == 11
    await _settle(nodes)
    assert sorted(len(n.owned) for n in nodes) == [10, 10, 10]
