"""Migration 0011 over a populated schema: every observation, constraint and chain link survives the move
into day partitions, and the writer carries on where it stopped."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.ledger.old_schema import register_target
from tests.ledger.test_observations import _obs
from tracker_watch.domain.evidence import Grade
from tracker_watch.domain.targets import parse_target
from tracker_watch.ledger import migrate
from tracker_watch.ledger.evidence import EvidenceWriter
from tracker_watch.ledger.verify import verify_ledger

PARTITIONED = 11


async def snapshot(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    return [dict(r) for r in await conn.fetch("SELECT * FROM observations ORDER BY node, chain_seq")]


async def constraints(conn: asyncpg.Connection) -> set[str]:
    return {r["conname"] for r in await conn.fetch(
        "SELECT conname FROM pg_constraint WHERE conrelid = 'observations'::regclass AND contype IN ('c', 'f')")}


async def test_populated_observations_move_into_partitions(pg_dsn: str, schema: str) -> None:
    conn = await asyncpg.connect(pg_dsn)
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=2, server_settings={"search_path": schema})
    try:
        await migrate.apply(conn, schema, upto=PARTITIONED - 1)
        target = await register_target(pool, parse_target("c" * 40), "Holder", "Work")  # as version 10 did
        w = EvidenceWriter(pool, "n1", Ed25519PrivateKey.generate())
        start = datetime(2025, 1, 30, 22, tzinfo=UTC)
        for b in range(5):  # across a month's end, then today
            await w.write([dataclasses.replace(_obs(target, ip=f"127.0.0.{10 + i}", port=6881 + b,
                                                    grade=Grade.VERIFIED if i == 0 else Grade.LISTED),
                                               observed_at=start + timedelta(hours=8 * b, minutes=i))
                           for i in range(20)])
        await w.write([_obs(target, port=1)])
        await w.checkpoint()
        async with conn.transaction():  # some rows redacted the old way
            await conn.execute("SET LOCAL tracker_watch.redact = 'on'")
            await conn.execute("UPDATE observations SET ip = NULL, port = NULL, peer_id = NULL, client = NULL, "
                               "redacted_at = now() WHERE host(ip) = '127.0.0.12'")
        # an index another migration might have added is carried over
        await conn.execute("CREATE INDEX observations_client ON observations (client)")
        before, checks = await snapshot(conn), await constraints(conn)
        assert (await verify_ledger(conn)).ok

        assert await migrate.apply(conn, schema, upto=PARTITIONED) == [PARTITIONED]

        assert await conn.fetchval("SELECT relkind::text FROM pg_class WHERE oid = 'observations'::regclass") == "p"
        assert await snapshot(conn) == before
        assert await constraints(conn) == checks
        days = {r["relname"] for r in await conn.fetch(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'observations'::regclass")}
        assert {"observations_p20250130", "observations_p20250131", "observations_p20250201"} <= days
        assert await conn.fetchval("SELECT count(*) FROM observations_default") == 0
        assert await conn.fetchval("SELECT indexdef FROM pg_indexes WHERE indexname = 'observations_client' "
                                   "AND schemaname = current_schema()") == (
            f"CREATE INDEX observations_client ON ONLY {schema}.observations USING btree (client)")
        report = await verify_ledger(conn)
        assert report.ok
        assert report.nodes[0].redacted > 0
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await conn.execute("DELETE FROM observations WHERE chain_seq = 1")
        with pytest.raises(asyncpg.UniqueViolationError):  # the primary key holds in each partition
            await conn.execute("INSERT INTO observations SELECT * FROM observations WHERE chain_seq = 1")
        # the writer carries on, and recognises a replay of what was written before the migration
        assert await w.write([_obs(target, port=2)]) == 1
        assert await w.write([dataclasses.replace(_obs(target), id=before[0]["id"],
                                                  observed_at=before[0]["observed_at"])]) == 0
        assert (await verify_ledger(conn)).ok
    finally:
        await pool.close()
        await conn.close()
