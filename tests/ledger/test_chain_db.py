"""The chain as stored: written by EvidenceWriter, checked by `ledger verify`, after SQL tampering."""

from __future__ import annotations

import dataclasses
import os
import sys
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.helpers import run_process
from tests.ledger.test_observations import _obs, _target
from tracker_watch.domain.evidence import Grade, utc_now_ms
from tracker_watch.ledger.db import Database
from tracker_watch.ledger.evidence import EvidenceWriter
from tracker_watch.ledger.verify import verify_ledger


async def build_chain(db: Database, batches: int = 3, per_batch: int = 4) -> EvidenceWriter:
    target = await _target(db)
    writer = EvidenceWriter(db.pool, "n1", Ed25519PrivateKey.generate(), checkpoint_every=10**9)
    for b in range(batches):
        await writer.write([dataclasses.replace(_obs(target, ip=f"127.0.0.{11 + i}", port=6881 + b),
                                                grade=Grade.VERIFIED if i == 0 else Grade.ADVERTISED,
                                                piece_index=i, piece_bytes=16384) for i in range(per_batch)])
    await writer.checkpoint()
    return writer


async def finding(db: Database) -> tuple[str, int, str] | None:
    async with db.pool.acquire() as conn:
        report = await verify_ledger(conn)
    bad = [n.finding for n in report.nodes if n.finding is not None]
    return (bad[0].problem, bad[0].seq, bad[0].kind) if bad else None


async def tamper(db: Database, *statements: str) -> None:
    async with db.pool.acquire() as conn, conn.transaction():
        # an attacker with database rights can switch the append-only triggers off
        await conn.execute("ALTER TABLE observations DISABLE TRIGGER USER")
        await conn.execute("ALTER TABLE incident_changes DISABLE TRIGGER USER")
        for sql in statements:
            await conn.execute(sql)
        await conn.execute("ALTER TABLE observations ENABLE TRIGGER USER")
        await conn.execute("ALTER TABLE incident_changes ENABLE TRIGGER USER")


async def test_written_chain_is_intact_and_covers_incident_changes(db: Database) -> None:
    await build_chain(db)
    async with db.pool.acquire() as conn:
        report = await verify_ledger(conn)
    assert report.ok
    [node] = report.nodes
    changes = await db.pool.fetchval("SELECT count(*) FROM incident_changes")
    assert changes == 12  # every batch changed the four incidents (one per IP)
    assert node.rows == 12 + changes
    assert node.checkpoints == 1


async def test_replayed_batch_does_not_extend_the_chain(db: Database) -> None:
    target = await _target(db)
    writer = EvidenceWriter(db.pool, "n1", Ed25519PrivateKey.generate())
    batch = [_obs(target, port=p) for p in range(1, 4)]
    assert await writer.write(batch) == 3
    head = await db.pool.fetchval("SELECT seq FROM chain_heads")
    assert await writer.write(batch) == 0
    assert await db.pool.fetchval("SELECT seq FROM chain_heads") == head


@pytest.mark.parametrize(("statements", "expected"), [
    (["UPDATE observations SET port = port + 1 WHERE chain_seq = 2"], ("edited", 2, "observation")),
    (["UPDATE incident_changes SET best_grade = 'verified' WHERE chain_seq = 6"], ("edited", 6, "incident_change")),
    (["DELETE FROM observations WHERE chain_seq = 3"], ("deleted", 4, "observation")),
    (["UPDATE observations SET chain_seq = 100 WHERE chain_seq = 2",
      "UPDATE observations SET chain_seq = 2 WHERE chain_seq = 3",
      "UPDATE observations SET chain_seq = 3 WHERE chain_seq = 100"], ("reordered", 2, "observation")),
])
async def test_tampering_is_named(db: Database, statements: list[str], expected: tuple[str, int, str]) -> None:
    await build_chain(db)
    await tamper(db, *statements)
    assert await finding(db) == expected


async def test_inserted_rows_are_named(db: Database) -> None:
    await build_chain(db)
    # a forged row with made-up hashes after the head, and a row smuggled in outside the chain
    await tamper(db, """INSERT INTO observations (id, target_id, observed_at, ip, port, source, grade, node, version,
                            chain_seq, content_hash, prev_hash, row_hash)
                        SELECT gen_random_uuid(), target_id, now(), '10.9.9.9', 1, 'tracker', 'verified', node, version,
                               (SELECT max(chain_seq) + 1 FROM observations), content_hash, prev_hash, row_hash
                        FROM observations WHERE chain_seq = 1""")
    problem = await finding(db)
    assert problem is not None
    assert problem[0] in ("inserted", "edited")


async def test_unchained_row_is_an_insertion(db: Database) -> None:
    await build_chain(db)
    await tamper(db, """INSERT INTO observations (id, target_id, observed_at, ip, port, source, grade, node, version)
                        SELECT gen_random_uuid(), target_id, now(), '10.9.9.9', 1, 'tracker', 'verified', node, version
                        FROM observations WHERE chain_seq = 1""")
    assert await finding(db) == ("inserted", 0, "observation")


async def test_cut_tail_and_forged_signature_are_caught_by_checkpoints(db: Database) -> None:
    await build_chain(db)
    last = await db.pool.fetchval("SELECT max(chain_seq) FROM incident_changes")
    await tamper(db, f"DELETE FROM incident_changes WHERE chain_seq = {last}")
    assert await finding(db) == ("deleted", last, "checkpoint")


async def test_forged_checkpoint_signature(db: Database) -> None:
    await build_chain(db)
    await db.pool.execute("ALTER TABLE chain_checkpoints DISABLE TRIGGER USER")
    await db.pool.execute("UPDATE chain_checkpoints SET signature = overlay(signature placing '\\x00' from 1)")
    problem = await finding(db)
    assert problem is not None
    assert problem[0] == "edited"
    assert problem[2] == "checkpoint"


async def test_redacted_rows_still_verify(db: Database) -> None:
    from tracker_watch.ledger.retention import purge

    await build_chain(db)
    async with db.pool.acquire() as conn:
        dry = await purge(conn, utc_now_ms() + timedelta(days=1), 86400, dry_run=True)
        assert (dry.incidents, dry.observations, dry.incident_changes) == (4, 12, 12)
        await conn.execute("UPDATE incidents SET legal_hold = true WHERE host(ip) = '127.0.0.11'")
        done = await purge(conn, utc_now_ms() + timedelta(days=1), 86400, dry_run=False)
        assert (done.incidents, done.observations) == (3, 9)
        report = await verify_ledger(conn)
    assert report.ok
    assert report.nodes[0].redacted == 9 + 9
    kept = await db.pool.fetch("SELECT DISTINCT host(ip) AS ip FROM observations WHERE ip IS NOT NULL")
    assert [r["ip"] for r in kept] == ["127.0.0.11"]  # on legal hold
    # a redaction that touches anything but personal fields is refused
    async with db.pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL tracker_watch.redact = 'on'")
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await conn.execute("UPDATE observations SET grade = 'listed', redacted_at = now() WHERE chain_seq = 1")


async def tw(env: dict[str, str], *args: str) -> tuple[int, str]:
    return await run_process(sys.executable, "-m", "tracker_watch", *args, env=env)


async def test_cli_exit_codes(db: Database, pg_dsn: str, schema: str, tmp_path: Path) -> None:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("TRACKER_WATCH_")},
           "TRACKER_WATCH_DATABASE_DSN": pg_dsn, "TRACKER_WATCH_DATABASE_SCHEMA": schema,
           "TRACKER_WATCH_NODE_STATE_DIR": str(tmp_path)}
    await build_chain(db)
    code, out = await tw(env, "ledger", "verify")
    assert code == 0, out
    assert "OK: 24 evidence rows checked" in out
    await tamper(db, "UPDATE observations SET client = 'x' WHERE chain_seq = 2")
    code, out = await tw(env, "ledger", "verify")
    assert code == 1
    assert "TAMPERED at position 2 (observation" in out
    assert "edited" in out
    code, out = await tw(env, "ledger", "pubkey")
    assert code == 0
    assert "BEGIN PUBLIC KEY" in out
