from __future__ import annotations

import asyncio

import asyncpg
import pytest

from tracker_watch.ledger import migrate


async def test_apply_is_idempotent_and_recorded(pg_dsn: str, schema: str) -> None:
    conn = await asyncpg.connect(pg_dsn)
    try:
        first = await migrate.apply(conn, schema)
        assert first == [m.version for m in migrate.available()]
        assert await migrate.apply(conn, schema) == []
        tables = {r["table_name"] for r in await conn.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", schema)}
        assert {"rights_holders", "works", "targets", "observations", "audit_log", "schema_migrations"} <= tables
    finally:
        await conn.close()


async def test_concurrent_appliers_serialise(pg_dsn: str, schema: str) -> None:
    conns = [await asyncpg.connect(pg_dsn) for _ in range(3)]
    try:
        results = await asyncio.gather(*(migrate.apply(c, schema) for c in conns))
        assert sorted(len(r) for r in results) == [0, 0, len(migrate.available())]
    finally:
        for c in conns:
            await c.close()


async def test_edited_migration_is_refused(pg_dsn: str, schema: str) -> None:
    conn = await asyncpg.connect(pg_dsn)
    try:
        await migrate.apply(conn, schema)
        await conn.execute("UPDATE schema_migrations SET checksum = 'x' WHERE version = 1")
        with pytest.raises(migrate.MigrationError, match="changed after it was applied"):
            await migrate.apply(conn, schema)
    finally:
        await conn.close()
