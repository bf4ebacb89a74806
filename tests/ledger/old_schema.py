"""Test equipment for upgrade tests: registering targets in the schema of an older version (migrate.apply
with `upto`). Today's TargetStore.register writes today's columns (migration 0015's peer_hints, for one), so
it cannot register in an older schema; this writes only the columns the schema under test has, as that
version's store did. tests/ledger/test_targets.py checks that at the newest version it registers what
TargetStore.register does."""

from __future__ import annotations

from typing import Any

from tracker_watch.domain.targets import TargetSpec
from tracker_watch.ledger.targets import work_of

# the columns TargetStore.register writes that a migration after 0001 added, with that migration's number
ADDED_IN = {"peer_hints": 15}


async def schema_version(conn: Any) -> int:
    """The newest migration applied to the schema on `conn`'s search path."""
    return int(await conn.fetchval("SELECT max(version) FROM schema_migrations"))


async def register_target(pool: Any, spec: TargetSpec, holder: str, work: str) -> int:
    """Register a target (its holder and work too) with the columns of the schema's version; returns its id."""
    async with pool.acquire() as conn, conn.transaction():
        version = await schema_version(conn)
        work_id = await work_of(conn, holder, work)  # rights_holders and works: as in 0001
        meta = spec.meta
        values: dict[str, Any] = {
            "work_id": work_id, "infohash_v1": spec.infohash_v1, "infohash_v2": spec.infohash_v2,
            "input_kind": spec.kind, "display_name": spec.display_name, "trackers": list(spec.trackers),
            "info": spec.info, "name": meta.name if meta else None, "total_size": meta.total_size if meta else None,
            "piece_length": meta.piece_length if meta else None, "num_pieces": meta.num_pieces if meta else None,
            "peer_hints": list(spec.peer_hints)}
        values = {column: value for column, value in values.items() if ADDED_IN.get(column, 1) <= version}
        columns = ", ".join(values)
        params = ", ".join(f"${i}" for i in range(1, len(values) + 1))
        metadata_at = "now()" if spec.info is not None else "NULL"
        return int(await conn.fetchval(
            f"INSERT INTO targets ({columns}, metadata_at) VALUES ({params}, {metadata_at}) RETURNING id",
            *values.values()))
