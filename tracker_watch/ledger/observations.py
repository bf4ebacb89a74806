"""Writing and reading observations.

Writes go COPY → session-temporary staging table → INSERT … ON CONFLICT (id) DO NOTHING, in one
transaction: COPY keeps ingestion fast, and the conflict clause makes a retried or replayed batch
harmless because every observation carries the id it was given when it was made.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from tracker_watch.domain.evidence import Observation

COLUMNS = (
    "id", "target_id", "infohash_v1", "infohash_v2", "observed_at", "ip", "port", "source", "tracker_url",
    "grade", "peer_id", "client", "pieces_advertised", "num_pieces", "pieces_verified", "bytes_verified",
    "node", "version", "our_ip", "our_port",
)
_STAGE = "observations_stage"
_COLS = ", ".join(COLUMNS)


def as_record(o: Observation) -> tuple[Any, ...]:
    return (o.id, o.target_id, o.infohash_v1, o.infohash_v2, o.observed_at, o.ip, o.port, o.source.value,
            o.tracker_url, o.grade.value, o.peer_id, o.client, o.pieces_advertised, o.num_pieces,
            o.pieces_verified, o.bytes_verified, o.node, o.version, o.our_ip, o.our_port)


class ObservationStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def write(self, batch: Sequence[Observation]) -> int:
        """Insert the batch; returns how many rows were new (replays of known ids are skipped)."""
        if not batch:
            return 0
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE} (LIKE observations INCLUDING DEFAULTS) "
                "ON COMMIT DELETE ROWS")
            await conn.copy_records_to_table(_STAGE, records=[as_record(o) for o in batch], columns=COLUMNS)
            status = await conn.execute(
                f"INSERT INTO observations ({_COLS}) SELECT {_COLS} FROM {_STAGE} "
                "ORDER BY observed_at, id ON CONFLICT (id) DO NOTHING")
            return int(status.split()[-1])

    async def latest_by_peer(self, target_id: int | None = None) -> list[asyncpg.Record]:
        """Per (target, ip, port): best grade seen, its client, source and the most pieces advertised."""
        where = "WHERE o.target_id = $1" if target_id is not None else "WHERE $1::bigint IS NULL"
        return await self.pool.fetch(f"""
            SELECT o.target_id, host(o.ip) AS ip, o.port,
                   (array_agg(o.grade ORDER BY {_GRADE_RANK} DESC, o.observed_at DESC))[1] AS grade,
                   (array_agg(o.client ORDER BY o.observed_at DESC) FILTER (WHERE o.client IS NOT NULL))[1]
                       AS client,
                   (array_agg(o.source ORDER BY o.observed_at))[1] AS source,
                   max(o.pieces_advertised) AS pieces_advertised, max(o.num_pieces) AS num_pieces,
                   max(o.pieces_verified) AS pieces_verified, max(o.bytes_verified) AS bytes_verified,
                   min(o.observed_at) AS first_seen, max(o.observed_at) AS last_seen, count(*) AS observations
            FROM observations o {where}
            GROUP BY o.target_id, o.ip, o.port ORDER BY o.target_id, o.ip, o.port""", target_id)

    async def count(self) -> int:
        n: int = await self.pool.fetchval("SELECT count(*) FROM observations")
        return n

    async def since(self, when: datetime) -> list[asyncpg.Record]:
        return await self.pool.fetch("SELECT * FROM observations WHERE observed_at >= $1 ORDER BY observed_at", when)


_GRADE_RANK = ("CASE o.grade WHEN 'verified' THEN 3 WHEN 'advertised' THEN 2 WHEN 'handshake' THEN 1 "
               "WHEN 'listed' THEN 0 ELSE -1 END")
