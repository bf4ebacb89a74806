"""The evidence writer's incident upsert: updates stay heap-only (HOT), and exactly the touches that change
an incident's evidence are chained (migration 0014, issue 14 target 1)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from datetime import timedelta
from typing import Any

import asyncpg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.ledger.test_observations import _obs, _target
from tracker_watch.domain.evidence import Grade, utc_now_ms
from tracker_watch.ledger.db import Database
from tracker_watch.ledger.evidence import EvidenceWriter
from tracker_watch.ledger.retention import purge

# what the upsert sets on (almost) every touch. corrupt is left out: a one-way flag, it flips at most
# once in an incident's life, so a partial index on it (WHERE corrupt) costs one non-HOT update at most
_UPDATED = {"first_seen", "last_seen", "best_grade", "ports", "pieces_verified", "bytes_verified", "observations",
            "updated_at"}


async def test_no_index_on_incidents_covers_a_column_the_upsert_updates(db: Database) -> None:
    rows = await db.pool.fetch("""
        SELECT c.relname, pg_get_indexdef(i.indexrelid) AS def,
               array(SELECT a.attname FROM pg_attribute a WHERE a.attrelid = i.indrelid
                     AND a.attnum = ANY(i.indkey::int2[])) AS cols,
               coalesce(pg_get_expr(i.indpred, i.indrelid), '') || coalesce(pg_get_expr(i.indexprs, i.indrelid), '')
                   AS exprs
        FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
        WHERE i.indrelid = 'incidents'::regclass""")
    for r in rows:
        assert not _UPDATED & set(r["cols"]), r["def"]  # an updated indexed column makes every update non-HOT
        assert not any(col in r["exprs"] for col in _UPDATED), r["def"]
    options = await db.pool.fetchval("SELECT reloptions FROM pg_class WHERE oid = 'incidents'::regclass")
    assert any(o.startswith("fillfactor=") and int(o.split("=")[1]) < 100 for o in options or [])


async def test_the_writers_incident_updates_are_heap_only(db: Database, pg_dsn: str, schema: str) -> None:
    target = await _target(db)
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=1, server_settings={"search_path": schema})
    assert pool is not None
    try:
        writer = EvidenceWriter(pool, "n1", Ed25519PrivateKey.generate())
        # the same 5 peers four times: 5 inserts, then 15 updates, all versions fitting on the first page
        # (so the result does not hang on whether pruning may reclaim versions other sessions can still see)
        for _b in range(4):
            await writer.write([_obs(target, ip=f"127.0.0.{11 + i}") for i in range(5)])
        await pool.execute("SELECT pg_stat_force_next_flush()")  # the writer's counters, once it is idle
        updated = hot = 0
        deadline = time.monotonic() + 60
        while updated < 15 and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            async with db.pool.acquire() as conn:
                await conn.execute("SELECT pg_stat_clear_snapshot()")
                row = await conn.fetchrow("SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables "
                                          "WHERE relid = 'incidents'::regclass")
                assert row is not None
                updated, hot = row
    finally:
        await pool.close()
    assert (updated, hot) == (15, 15)


async def test_only_touches_that_change_the_evidence_are_chained(db: Database) -> None:
    target = await _target(db)
    writer = EvidenceWriter(db.pool, "n1", Ed25519PrivateKey.generate())
    peer = _obs(target, ip="127.0.0.11", port=6881)

    async def chained(**change: Any) -> int:
        before = await db.pool.fetchval("SELECT count(*) FROM incident_changes")
        await writer.write([dataclasses.replace(_obs(target, ip="127.0.0.11"), **{"port": 6881, **change})])
        return int(await db.pool.fetchval("SELECT count(*) FROM incident_changes")) - int(before)

    await writer.write([peer])
    assert await chained() == 0  # the same port and grade again: last_seen and counters only
    assert await chained(port=6882) == 1  # a new port
    assert await chained(port=6881, grade=Grade.LISTED) == 0  # a lower grade changes nothing
    assert await chained(grade=Grade.VERIFIED, piece_index=3, piece_bytes=16384, pieces_verified=1) == 1
    assert await chained(grade=Grade.VERIFIED, piece_index=3, piece_bytes=16384, pieces_verified=1) == 0
    assert await chained(grade=Grade.VERIFIED, piece_index=1, piece_bytes=16384, pieces_verified=1) == 1
    assert await chained(grade=Grade.CORRUPT) == 1
    row = await db.pool.fetchrow("SELECT ports, pieces_verified, best_grade, corrupt, observations FROM incidents")
    assert row is not None
    assert dict(row) == {"ports": [6881, 6882], "pieces_verified": [1, 3], "best_grade": "verified", "corrupt": True,
                         "observations": 8}
    last = await db.pool.fetchrow("SELECT ports, pieces_verified, corrupt FROM incident_changes "
                                  "ORDER BY chain_seq DESC LIMIT 1")
    assert last is not None
    assert dict(last) == {"ports": [6881, 6882], "pieces_verified": [1, 3], "corrupt": True}


async def test_retention_finds_due_incidents_by_their_window(db: Database) -> None:
    target = await _target(db)
    writer = EvidenceWriter(db.pool, "n1", Ed25519PrivateKey.generate(), window_s=3600)
    now = utc_now_ms()
    await writer.write([dataclasses.replace(_obs(target, ip="127.0.0.11"), observed_at=now - timedelta(hours=5)),
                        dataclasses.replace(_obs(target, ip="127.0.0.12"), observed_at=now - timedelta(hours=2))])
    async with db.pool.acquire() as conn:
        # the cutoff falls inside 127.0.0.12's window, after its last sighting: due; 127.0.0.11 long due
        report = await purge(conn, now - timedelta(minutes=90), 3600, dry_run=True)
        assert report.incidents == 2
        # the cutoff falls inside the window, before the last sighting: kept
        report = await purge(conn, now - timedelta(hours=2, minutes=1), 3600, dry_run=True)
        assert report.incidents == 1
