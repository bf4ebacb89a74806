"""The reused schemas of tests/schemas.py are as good as new ones: what a test wrote is gone, sequences
start over, and a schema whose structure a test changed is never handed out again."""

from __future__ import annotations

import time
import uuid
from typing import Any

import asyncpg

from tests.schemas import STALE_AFTER_S, SchemaPool, drop_stale_schemas, schema_name
from tracker_watch.domain.targets import parse_target
from tracker_watch.ledger.targets import TargetStore

_ROWS = """
SELECT c.relname, (xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM %I.%I', $1::text, c.relname),
                                                      false, true, '')))[1]::text::int AS n
FROM pg_class c WHERE c.relnamespace = $1::text::regnamespace AND c.relkind = 'r' AND c.relname <> 'schema_migrations'
"""


async def _state(conn: asyncpg.Connection, schema: str) -> dict[str, Any]:
    rows = {r["relname"]: r["n"] for r in await conn.fetch(_ROWS, schema)}
    sequences = {r["sequencename"]: r["last_value"] for r in await conn.fetch(
        "SELECT sequencename, last_value FROM pg_sequences WHERE schemaname = $1", schema)}
    migrations = [r["version"] for r in await conn.fetch(f'SELECT version FROM "{schema}".schema_migrations')]
    return {"rows": rows, "sequences": sequences, "migrations": migrations}


async def test_a_reused_schema_is_reset_to_the_freshly_migrated_state(pg_dsn: str) -> None:
    pool = SchemaPool(pg_dsn)
    conn = await asyncpg.connect(pg_dsn)
    try:
        name = await pool.take()
        fresh = await _state(conn, name)
        assert not any(fresh["rows"].values())
        assert not any(fresh["sequences"].values())
        db = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=2, server_settings={"search_path": name})
        try:
            store = TargetStore(db)
            await store.register(parse_target("a" * 40), "Studio", "Film", actor="test")
            await db.execute("INSERT INTO nodes (name, max_targets, version) VALUES ('n1', 10, 'tw/test')")
        finally:
            await db.close()
        written = await _state(conn, name)
        assert written["rows"]["targets"] == written["rows"]["works"] == 1
        assert written["sequences"]["targets_id_seq"] == 1
        await pool.give_back(name)
        again = await pool.take()
        assert again == name  # reused ...
        assert await _state(conn, again) == fresh  # ... and as it was
        await conn.execute(f'ALTER TABLE "{again}".observations DISABLE TRIGGER USER')
        await pool.give_back(again)  # a structure changed: dropped, never handed out again
        assert await conn.fetchval("SELECT to_regnamespace($1)", again) is None
        assert await pool.take() != again
        assert (pool.created, pool.reused, pool.dropped) == (2, 1, 1)
    finally:
        await pool.close()
        await conn.close()


async def test_schemas_a_killed_session_left_are_dropped_by_a_later_one_and_no_newer_one(pg_dsn: str) -> None:
    """A session that is killed (CI cancelled, pytest interrupted) never drops its schemas; the next session on
    the same server drops those older than STALE_AFTER_S, and never a schema of a session still running."""
    now = time.time()
    stale = f"tw_test_{int(now - STALE_AFTER_S - 60):08x}_{uuid.uuid4().hex[:8]}"
    fresh = f"tw_test_{int(now - STALE_AFTER_S + 600):08x}_{uuid.uuid4().hex[:8]}"
    unstamped = f"tw_test_{uuid.uuid4().hex[:12]}"  # the old names: no telling whose, so left alone
    conn = await asyncpg.connect(pg_dsn)
    try:
        for name in (stale, fresh, unstamped):
            await conn.execute(f'CREATE SCHEMA "{name}"')
            await conn.execute(f'CREATE TABLE "{name}".t (x int)')
        dropped = await drop_stale_schemas(conn, now=now)
        left = {r["nspname"] for r in await conn.fetch(
            "SELECT nspname FROM pg_namespace WHERE nspname = ANY($1::text[])", [stale, fresh, unstamped])}
        assert stale in dropped
        assert left == {fresh, unstamped}
    finally:
        for name in (stale, fresh, unstamped):
            await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        await conn.close()


def test_new_schema_names_carry_their_creation_time() -> None:
    name = schema_name()
    assert name.startswith("tw_test_")
    assert abs(int(name.split("_")[2], 16) - time.time()) < 60
