from __future__ import annotations

import dataclasses
from datetime import timedelta

import asyncpg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tracker_watch.domain.evidence import Grade, Observation, Source, utc_now_ms
from tracker_watch.domain.targets import parse_target
from tracker_watch.ledger.db import Database
from tracker_watch.ledger.evidence import EvidenceWriter
from tracker_watch.ledger.observations import ObservationStore
from tracker_watch.ledger.targets import TargetStore


async def _target(db: Database) -> int:
    row, _ = await TargetStore(db.pool).register(parse_target("c" * 40), "Holder", "Work", actor="test")
    return row.id


def writer(db: Database, node: str = "n1") -> EvidenceWriter:
    return EvidenceWriter(db.pool, node, Ed25519PrivateKey.generate())


def _obs(target_id: int, ip: str = "127.0.0.11", port: int = 6881, grade: Grade = Grade.ADVERTISED) -> Observation:
    return Observation(target_id=target_id, infohash_v1=b"\xcc" * 20, infohash_v2=None, observed_at=utc_now_ms(),
                       ip=ip, port=port, source=Source.TRACKER, grade=grade, node="n1", version="tw/test",
                       tracker_url="http://127.0.0.1/announce", peer_id=b"-LT2110-" + b"x" * 12,
                       client="libtorrent/2.1.1.0", pieces_advertised=32, num_pieces=32, our_ip="127.0.0.2",
                       our_port=6881)


async def test_replayed_batch_inserts_nothing_twice(db: Database) -> None:
    target = await _target(db)
    store = ObservationStore(db.pool)
    batch = [_obs(target, port=6000 + i) for i in range(50)]
    assert await writer(db).write(batch) == 50
    assert await writer(db).write([*batch[10:], _obs(target, port=9)]) == 1
    assert await store.count() == 51


async def test_every_field_round_trips_including_ipv6(db: Database) -> None:
    target = await _target(db)
    store = ObservationStore(db.pool)
    o = dataclasses.replace(_obs(target, ip="2001:db8::7", port=51413), observed_at=utc_now_ms())
    await writer(db).write([o])
    row = (await store.since(o.observed_at - timedelta(seconds=1)))[0]
    assert str(row["ip"]) == "2001:db8::7"
    assert row["port"] == 51413
    assert row["observed_at"] == o.observed_at
    assert row["peer_id"] == o.peer_id
    assert (row["source"], row["grade"], row["tracker_url"]) == ("tracker", "advertised", o.tracker_url)
    assert (row["node"], row["version"], str(row["our_ip"]), row["our_port"]) == ("n1", "tw/test", "127.0.0.2", 6881)


async def test_observations_are_append_only(db: Database) -> None:
    target = await _target(db)
    w = writer(db)
    await w.write([_obs(target)])
    await w.checkpoint()
    for statement in ("UPDATE observations SET port = 1", "DELETE FROM observations",
                      "TRUNCATE observations CASCADE", "UPDATE incident_changes SET ip = NULL",
                      "DELETE FROM incident_changes", "TRUNCATE incident_changes", "DELETE FROM chain_checkpoints",
                      "DELETE FROM audit_log"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await db.pool.execute(statement)


async def test_latest_by_peer_takes_best_grade(db: Database) -> None:
    target = await _target(db)
    store = ObservationStore(db.pool)
    await writer(db).write([_obs(target, grade=Grade.LISTED), _obs(target, grade=Grade.VERIFIED),
                       _obs(target, grade=Grade.HANDSHAKE), _obs(target, ip="127.0.0.66", grade=Grade.LISTED)])
    rows = {(r["ip"], r["port"]): r for r in await store.latest_by_peer()}
    assert rows[("127.0.0.11", 6881)]["grade"] == "verified"
    assert rows[("127.0.0.11", 6881)]["observations"] == 3
    assert rows[("127.0.0.66", 6881)]["grade"] == "listed"
