"""Plain numbered SQL migrations (ledger/migrations/NNNN_name.sql), applied in order under an advisory lock.

Each file runs in its own transaction and is recorded with its SHA-256 in `schema_migrations`; a file
that changed after it was applied is an error, not a silent divergence between installations.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available() -> list[Migration]:
    out = []
    for entry in resources.files("tracker_watch.ledger").joinpath("migrations").iterdir():
        if m := _NAME.match(entry.name):
            out.append(Migration(int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    out.sort(key=lambda m: m.version)
    versions = [m.version for m in out]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"duplicate migration numbers in {versions}")
    return out


async def apply(conn: asyncpg.Connection, schema: str, upto: int | None = None) -> list[int]:
    """Bring `schema` up to date (or to version `upto`: tests of a migration over a populated schema);
    returns the versions applied now."""
    # lock first: even CREATE SCHEMA IF NOT EXISTS races between two starting nodes
    await conn.execute("SELECT pg_advisory_lock(hashtext($1))", f"tracker_watch.migrate.{schema}")
    try:
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        await conn.execute(f'SET search_path TO "{schema}"')
        await conn.execute("""
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version integer PRIMARY KEY,
                name text NOT NULL,
                checksum text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now())""")
        rows = await conn.fetch("SELECT version, checksum FROM schema_migrations")
        done = {r["version"]: r["checksum"] for r in rows}
        applied = []
        for mig in available():
            if upto is not None and mig.version > upto:
                break
            if mig.version in done:
                if done[mig.version] != mig.checksum:
                    raise MigrationError(f"migration {mig.version:04d}_{mig.name} changed after it was applied")
                continue
            async with conn.transaction():
                await conn.execute(mig.sql)
                await conn.execute("INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                                   mig.version, mig.name, mig.checksum)
            applied.append(mig.version)
        return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", f"tracker_watch.migrate.{schema}")
