"""Storage per evidence row: write the ingestion mix through the real writer, VACUUM, measure bytes per row.

    python -m bench.sizing [--observations 20000]

The figures feed docs/scaling.md (storage per day for 10 million observations).
"""

from __future__ import annotations

import argparse
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.common import fresh_schema, pool_for, run, server_dsn, write_result
from bench.ingestion import make_observations, seed_targets
from tracker_watch.domain.evidence import encode_observation
from tracker_watch.ledger.db import Conn
from tracker_watch.ledger.evidence import EvidenceWriter

TABLES = ("observations", "incidents", "incident_changes")


async def sizes(conn: Conn, table: str) -> tuple[int, int]:
    """(heap, heap + indexes + TOAST) in bytes, summed over the partitions of a partitioned table (its
    own size is 0; pg_partition_tree lists nothing for a plain table)."""
    row = await conn.fetchrow(
        "SELECT coalesce(sum(pg_relation_size(relid)), pg_relation_size($1::regclass)) AS heap, "
        "coalesce(sum(pg_total_relation_size(relid)), pg_total_relation_size($1::regclass)) AS total "
        "FROM pg_partition_tree($1::regclass) WHERE isleaf", table)
    assert row is not None
    return int(row["heap"]), int(row["total"])


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    obs = make_observations(args.observations)
    out: dict[str, Any] = {"spool_bytes_per_observation": sum(len(encode_observation(o)) + 12 for o in obs) / len(obs)}
    async with server_dsn() as dsn, fresh_schema(dsn, "sizing") as schema:
        pool = await pool_for(dsn, schema)
        try:
            async with pool.acquire() as conn:
                await seed_targets(conn)
            writer = EvidenceWriter(pool, "bench", Ed25519PrivateKey.generate())
            for i in range(0, len(obs), 1000):
                await writer.write(obs[i:i + 1000])
            async with pool.acquire() as conn:
                for table in TABLES:
                    await conn.execute(f"VACUUM ANALYZE {table}")
                    rows = await conn.fetchval(f"SELECT count(*) FROM {table}")
                    # summed over partitions (a partitioned table's own size is 0; a plain table is its own tree)
                    heap, total = await sizes(conn, table)
                    out[table] = {"rows": rows, "heap_bytes_per_row": heap / rows, "total_bytes_per_row": total / rows}
                    print(f"{table}: {rows:,} rows, {heap / rows:.0f} B/row heap, "
                          f"{total / rows:.0f} B/row with indexes")
        finally:
            await pool.close()
    print(f"spool: {out['spool_bytes_per_observation']:.0f} B per observation")
    write_result("sizing", {"scale": vars(args), "summary": out})
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--observations", type=int, default=20_000)
    args = p.parse_args()
    run(lambda: main_async(args))


if __name__ == "__main__":
    main()
