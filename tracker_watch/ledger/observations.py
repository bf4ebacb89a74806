"""Reading observations (ledger/evidence.py writes them)."""

from __future__ import annotations

from datetime import datetime

import asyncpg


class ObservationStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def latest_by_peer(self, target_id: int | None = None) -> list[asyncpg.Record]:
        """Per (target, ip, port): best grade seen, its client, source and the most pieces advertised."""
        where = "WHERE o.target_id = $1" if target_id is not None else "WHERE $1::bigint IS NULL"
        return await self.pool.fetch(f"""
            SELECT o.target_id, host(o.ip) AS ip, o.port,
                   CASE WHEN bool_or(o.grade = 'corrupt') THEN 'corrupt'  -- it lied once: nothing it did counts
                        ELSE (array_agg(o.grade ORDER BY grade_rank(o.grade) DESC))[1] END AS grade,
                   (array_agg(o.client ORDER BY o.observed_at DESC) FILTER (WHERE o.client IS NOT NULL))[1]
                       AS client,
                   (array_agg(o.source ORDER BY o.observed_at))[1] AS source,
                   max(o.pieces_advertised) AS pieces_advertised, max(o.num_pieces) AS num_pieces,
                   max(o.pieces_verified) AS pieces_verified, max(o.bytes_verified) AS bytes_verified,
                   min(o.observed_at) AS first_seen, max(o.observed_at) AS last_seen, count(*) AS observations
            FROM observations o {where} AND o.ip IS NOT NULL
            GROUP BY o.target_id, o.ip, o.port ORDER BY o.target_id, o.ip, o.port""", target_id)

    async def count(self) -> int:
        n: int = await self.pool.fetchval("SELECT count(*) FROM observations")
        return n

    async def since(self, when: datetime) -> list[asyncpg.Record]:
        return await self.pool.fetch("SELECT * FROM observations WHERE observed_at >= $1 ORDER BY observed_at", when)
