"""Migrated schemas for the tests, reused instead of migrated anew for each test (test equipment).

Migrating a schema creates ~150 relations (the observations table has a partition per day, each with its
indexes) and dropping it removes them again: ~1 s of PostgreSQL's CPU per test, for the ~300 tests that
only need *a* migrated ledger. `SchemaPool` migrates a schema once (as `Database.start` does), hands it to
a test, and afterwards, if the test left its structure exactly as the migrations made it, resets it to the
freshly migrated state for the next test; anything else is dropped and replaced by a new one.

"Freshly migrated" is restored, not approximated: every table a test wrote is TRUNCATEd (new, empty files,
as after CREATE TABLE; `pg_relation_size` tells which ones were written), every sequence restarts, the
planner statistics and the cumulative counters of those tables are cleared. Structure is compared with a
fingerprint of the catalog (columns, defaults, constraints, indexes, triggers and whether they are enabled,
functions, views, partition bounds, storage options, privileges); a test that renamed, added, dropped or
disabled anything gives its schema up. Each process (each xdist worker) has a pool of its own.
"""

from __future__ import annotations

import re
import time
import uuid

import asyncpg

from tracker_watch.ledger import migrate, partitions

_NS = "$1::text::regnamespace"
FINGERPRINT = f"""
SELECT md5(string_agg(replace(x, $1, '@'), E'\\n' ORDER BY replace(x, $1, '@'))) FROM (
  SELECT 'rel ' || c.relname || ' ' || c.relkind::text || ' ' || c.relpersistence::text || ' '
         || coalesce(array_to_string(c.reloptions, ','), '') || ' ' || coalesce(c.relacl::text, '') || ' '
         || coalesce(pg_get_expr(c.relpartbound, c.oid), '') || ' ' || coalesce((
           SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || ' '
                             || a.attnotnull::text || ' ' || coalesce(pg_get_expr(d.adbin, d.adrelid), ''),
                             ', ' ORDER BY a.attnum)
           FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
           WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '') AS x
  FROM pg_class c WHERE c.relnamespace = {_NS}
  UNION ALL
  SELECT 'con ' || conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid)
  FROM pg_constraint WHERE connamespace = {_NS}
  UNION ALL
  SELECT 'idx ' || pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
  WHERE c.relnamespace = {_NS}
  UNION ALL
  SELECT 'trg ' || pg_get_triggerdef(t.oid) || ' ' || t.tgenabled::text
  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid WHERE c.relnamespace = {_NS} AND NOT t.tgisinternal
  UNION ALL
  SELECT 'fn ' || p.oid::regprocedure::text || ' ' || md5(pg_get_functiondef(p.oid))
  FROM pg_proc p WHERE p.pronamespace = {_NS}
  UNION ALL
  SELECT 'view ' || c.relname || ' ' || pg_get_viewdef(c.oid) FROM pg_class c
  WHERE c.relkind IN ('v', 'm') AND c.relnamespace = {_NS}
  UNION ALL
  SELECT 'type ' || t.typname || ' ' || t.typtype::text FROM pg_type t WHERE t.typnamespace = {_NS}
  UNION ALL
  SELECT 'schema ' || coalesce(n.nspacl::text, '') || ' ' || n.nspowner::text FROM pg_namespace n
  WHERE n.oid = {_NS}
) s
"""
# relations whose size says whether a test wrote to them: a table (its heap) and its indexes
_SIZES = f"""
SELECT c.relname, pg_relation_size(c.oid) AS size FROM pg_class c
WHERE c.relnamespace = {_NS} AND c.relkind IN ('r', 'i')
"""
_TABLE_OF_INDEX = f"""
SELECT i.relname AS index, t.relname AS tab FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_class t ON t.oid = x.indrelid WHERE i.relnamespace = {_NS} AND t.relkind = 'r'
"""


def _q(schema: str, name: str) -> str:
    return f'"{schema}"."{name}"'


STALE_AFTER_S = 6 * 3600  # far beyond any test session (CI's whole budget is 90 minutes)
_STAMPED = re.compile(r"^tw_test_([0-9a-f]{8})_[0-9a-f]{8}$")


def schema_name() -> str:
    """A test schema's name, stamped with its creation time: a session that was killed (a CI run cancelled, a
    pytest interrupted) leaves its schemas behind, and only the stamp tells a later session they are stale."""
    return f"tw_test_{int(time.time()):08x}_{uuid.uuid4().hex[:8]}"


async def drop_stale_schemas(conn: asyncpg.Connection, now: float | None = None) -> list[str]:
    """Drop the test schemas created more than STALE_AFTER_S ago (never one of a session still running)."""
    now = time.time() if now is None else now
    names = [r["nspname"] for r in await conn.fetch("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'tw_test_%'")]
    stale = [n for n in names if (m := _STAMPED.match(n)) and now - int(m.group(1), 16) > STALE_AFTER_S]
    for name in stale:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    return stale


class SchemaPool:
    """Migrated schemas of one process: `take` one for a test, `give_back` it afterwards."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.free: list[str] = []
        self.lent: set[str] = set()
        self.pristine: str | None = None  # the fingerprint of a freshly migrated schema
        self.sizes: dict[str, int] = {}  # its relations' sizes
        self.index_table: dict[str, str] = {}
        self.reused = self.created = self.dropped = 0

    async def take(self) -> str:
        if self.free:
            name = self.free.pop()
            self.reused += 1
        else:
            name = await self._create()
        self.lent.add(name)
        return name

    async def give_back(self, name: str, reuse: bool = True) -> None:
        """Reset `name` for the next test, or drop it (a test that failed, or changed the structure)."""
        self.lent.discard(name)
        conn = await asyncpg.connect(self.dsn)
        try:
            if reuse and await self._fingerprint(conn, name) == self.pristine and await self._reset(conn, name):
                self.free.append(name)
                return
            await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
            self.dropped += 1
        finally:
            await conn.close()

    async def close(self) -> None:
        if not (self.free or self.lent):
            return
        conn = await asyncpg.connect(self.dsn)
        try:
            for name in [*self.free, *self.lent]:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        finally:
            await conn.close()
        self.free.clear()
        self.lent.clear()

    async def _create(self) -> str:
        name = schema_name()
        conn = await asyncpg.connect(self.dsn)
        try:
            await migrate.apply(conn, name)  # what Database.start does (it sets the search_path)
            await partitions.ensure(conn)
            fingerprint = await self._fingerprint(conn, name)
            if self.pristine is None:
                self.pristine = fingerprint
                self.sizes = {r["relname"]: r["size"] for r in await conn.fetch(_SIZES, name)}
                self.index_table = {r["index"]: r["tab"] for r in await conn.fetch(_TABLE_OF_INDEX, name)}
        finally:
            await conn.close()
        self.created += 1
        return name

    @staticmethod
    async def _fingerprint(conn: asyncpg.Connection, name: str) -> str:
        # the catalog functions name objects of the search_path's schemas unqualified, others qualified;
        # whatever still carries the schema's name (function definitions) has it replaced
        await conn.execute(f'SET search_path TO "{name}"')
        return str(await conn.fetchval(FINGERPRINT, name))

    async def _reset(self, conn: asyncpg.Connection, name: str) -> bool:
        """Back to the freshly migrated state; False if a lock held elsewhere (a session the test left
        open) keeps that from happening soon."""
        written: set[str] = set()
        for r in await conn.fetch(_SIZES, name):
            if r["size"] != self.sizes.get(r["relname"]):
                written.add(self.index_table.get(r["relname"], r["relname"]))
        written.discard("schema_migrations")  # the one table migrations fill; its size never changes in a test
        try:
            async with conn.transaction():
                await conn.execute("SET LOCAL lock_timeout = '10s'")
                # the ledger's tables refuse TRUNCATE (append-only triggers): not for this session
                await conn.execute("SET LOCAL session_replication_role = replica")
                if written:
                    tables = ", ".join(_q(name, t) for t in sorted(written))
                    # CASCADE: a table others reference can only be emptied with them (they are empty or
                    # written, so emptying them too restores the same state)
                    await conn.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
                    oids = [r["oid"] for r in await conn.fetch(
                        "SELECT c.oid FROM pg_class c WHERE c.relnamespace = $1::text::regnamespace "
                        "AND c.relkind IN ('r', 'i', 'p', 'I')", name)]
                    await conn.execute("DELETE FROM pg_statistic WHERE starelid = ANY($1::oid[])", oids)
                    await conn.execute("SELECT pg_stat_reset_single_table_counters(o) FROM unnest($1::oid[]) o",
                                       oids)
                for r in await conn.fetch("SELECT sequencename FROM pg_sequences WHERE schemaname = $1 "
                                          "AND last_value IS NOT NULL", name):
                    await conn.execute(f"ALTER SEQUENCE {_q(name, r['sequencename'])} RESTART")
        except asyncpg.LockNotAvailableError:
            return False
        return True
