"""Chains as stored that mix format 1 (written before the upgrade) and format 2: `ledger verify` checks
both, and any edit of a v2 row — every column the hash covers, or its format — is named."""

from __future__ import annotations

import dataclasses

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.ledger.test_chain_db import finding, tamper
from tests.ledger.test_observations import _obs, _target
from tracker_watch.domain.evidence import OBSERVATION_FIELDS, Grade
from tracker_watch.domain.incidents import INCIDENT_CHANGE_FIELDS
from tracker_watch.ledger.db import Database
from tracker_watch.ledger.evidence import EvidenceWriter
from tracker_watch.ledger.verify import verify_ledger

KEY = Ed25519PrivateKey.generate()


async def mixed_chain(db: Database) -> None:
    """Two batches in format 1 (the previous release), then two in format 2, one node."""
    target = await _target(db)
    for b, fmt in enumerate((1, 1, 2, 2)):
        writer = EvidenceWriter(db.pool, "n1", KEY, checkpoint_every=10**9, chain_format=fmt)
        await writer.write([dataclasses.replace(_obs(target, ip=f"127.0.0.{11 + i}", port=6881 + b),
                                                grade=Grade.VERIFIED if i == 0 else Grade.ADVERTISED,
                                                piece_index=i, piece_bytes=16384, piece_sha1=bytes([b]) * 20)
                            for i in range(3)])
    await writer.checkpoint()


async def test_a_chain_of_v1_then_v2_rows_verifies(db: Database) -> None:
    await mixed_chain(db)
    formats = await db.pool.fetch("SELECT chain_format, count(*) FROM observations GROUP BY 1 ORDER BY 1")
    assert [(r[0], r[1]) for r in formats] == [(1, 6), (2, 6)]
    assert await db.pool.fetchval("SELECT count(DISTINCT chain_format) FROM incident_changes") == 2
    async with db.pool.acquire() as conn:
        report = await verify_ledger(conn)
    assert report.ok, report.nodes[0].finding
    assert report.rows == 12 + await db.pool.fetchval("SELECT count(*) FROM incident_changes")


_EDITS = {"id": "gen_random_uuid()", "observed_at": "observed_at + interval '1 microsecond'",
          "ip": "'127.0.0.99'", "our_ip": "'127.0.0.98'", "source": "'dht'", "grade": "'listed'",
          "infohash_v1": "'\\x00'::bytea || infohash_v1", "infohash_v2": "'\\x00'::bytea",
          "peer_id": "NULL", "piece_sha1": "NULL", "piece_sha256": "decode(repeat('01', 32), 'hex')",
          "tracker_url": "tracker_url || '?'", "client": "client || ' '", "version": "'v2'"}


@pytest.mark.parametrize("column", [f for f in OBSERVATION_FIELDS if f not in ("node", "target_id")])
async def test_any_edited_column_of_a_v2_observation_is_named(db: Database, column: str) -> None:
    await mixed_chain(db)
    seq = await db.pool.fetchval("SELECT max(chain_seq) FROM observations WHERE chain_format = 2 AND grade = "
                                 "'verified'")
    value = _EDITS.get(column, f"coalesce({column}, 0) + 1")
    await tamper(db, f"UPDATE observations SET {column} = {value} WHERE chain_seq = {seq}")
    assert await finding(db) == ("edited", seq, "observation")


@pytest.mark.parametrize("column", [f for f in INCIDENT_CHANGE_FIELDS if f not in ("incident_id", "target_id")])
async def test_any_edited_column_of_a_v2_incident_change_is_named(db: Database, column: str) -> None:
    await mixed_chain(db)
    seq = await db.pool.fetchval("SELECT max(chain_seq) FROM incident_changes WHERE chain_format = 2")
    value = {"ip": "'127.0.0.99'", "best_grade": "'listed'", "corrupt": "NOT corrupt",
             "ports": "ports || 1", "pieces_verified": "pieces_verified || 31"}.get(column)
    if value is None:
        value = f"{column} + interval '1 microsecond'" if column.endswith(("_at", "_seen", "_start")) else \
            f"{column} + 1"
    await tamper(db, f"UPDATE incident_changes SET {column} = {value} WHERE chain_seq = {seq}")
    assert await finding(db) == ("edited", seq, "incident_change")


@pytest.mark.parametrize(("table", "fmt"), [("observations", 1), ("incident_changes", 1)])
async def test_a_v2_row_relabelled_as_v1_is_named(db: Database, table: str, fmt: int) -> None:
    await mixed_chain(db)
    seq = await db.pool.fetchval(f"SELECT max(chain_seq) FROM {table} WHERE chain_format = 2")
    await tamper(db, f"UPDATE {table} SET chain_format = {fmt} WHERE chain_seq = {seq}")
    problem = await finding(db)
    assert problem is not None
    assert (problem[0], problem[1]) == ("edited", seq)


async def test_a_v1_row_relabelled_as_v2_is_named(db: Database) -> None:
    await mixed_chain(db)
    await tamper(db, "UPDATE observations SET chain_format = 2 WHERE chain_seq = 2")
    assert await finding(db) == ("edited", 2, "observation")
