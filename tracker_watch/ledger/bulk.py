"""Registering many targets in one statement set (the API's bulk endpoint): holders and works are upserted
once each, the targets go through COPY into a staging table and one INSERT … SELECT, all inside the
caller's transaction — so 10,000 targets either all exist afterwards or none does."""

from __future__ import annotations

from typing import Any

from tracker_watch.domain.targets import TargetSpec
from tracker_watch.ledger.db import Conn

_STAGE = """
CREATE TEMP TABLE targets_stage (
    idx integer, work_id bigint, infohash_v1 bytea, infohash_v2 bytea, input_kind text, display_name text,
    trackers text[], info bytea, name text, total_size bigint, piece_length integer, num_pieces integer,
    peer_hints text[]
) ON COMMIT DROP
"""
_INSERT = """
INSERT INTO targets (work_id, infohash_v1, infohash_v2, input_kind, display_name, trackers, info, name, total_size,
                     piece_length, num_pieces, metadata_at, peer_hints)
SELECT DISTINCT ON (s.work_id, s.infohash_v1, s.infohash_v2)
       s.work_id, s.infohash_v1, s.infohash_v2, s.input_kind, s.display_name, s.trackers, s.info, s.name, s.total_size,
       s.piece_length, s.num_pieces, CASE WHEN s.info IS NULL THEN NULL ELSE now() END, s.peer_hints
FROM targets_stage s
WHERE NOT EXISTS (SELECT 1 FROM targets t WHERE t.work_id = s.work_id AND t.status <> 'deleted'
                  AND (t.infohash_v1 = s.infohash_v1 OR t.infohash_v2 = s.infohash_v2))
ORDER BY s.work_id, s.infohash_v1, s.infohash_v2, s.idx
ON CONFLICT DO NOTHING
"""
_IDS = """
SELECT s.idx, t.id FROM targets_stage s JOIN targets t ON t.work_id = s.work_id AND t.status <> 'deleted'
    AND (t.infohash_v1 = s.infohash_v1 OR t.infohash_v2 = s.infohash_v2)
ORDER BY s.idx, t.id
"""


async def register_many(conn: Conn, items: list[tuple[TargetSpec, str, str]]) -> tuple[list[int], int]:
    """Register (spec, holder, work title) items; returns (target id per item, how many were new)."""
    works = await _upsert_works(conn, sorted({(h, w) for _, h, w in items}))
    await conn.execute(_STAGE)
    await conn.copy_records_to_table("targets_stage", records=[_record(i, spec, works[(h, w)])
                                                               for i, (spec, h, w) in enumerate(items)])
    status = await conn.execute(_INSERT)
    created = int(status.split()[-1])
    first: dict[int, int] = {}
    for r in await conn.fetch(_IDS):
        first.setdefault(r["idx"], r["id"])
    return [first[i] for i in range(len(items))], created


_HOLDERS = """
INSERT INTO rights_holders (name) SELECT n FROM unnest($1::text[]) AS n ORDER BY n ON CONFLICT (name) DO NOTHING
"""
_WORKS = """
INSERT INTO works (holder_id, title)
SELECT h.id, u.title FROM unnest($1::text[], $2::text[]) AS u (holder, title) JOIN rights_holders h ON h.name = u.holder
ORDER BY h.id, u.title
ON CONFLICT (holder_id, title) DO NOTHING
"""
_WORK_IDS = """
SELECT u.holder, u.title, w.id FROM unnest($1::text[], $2::text[]) AS u (holder, title)
JOIN rights_holders h ON h.name = u.holder JOIN works w ON w.holder_id = h.id AND w.title = u.title
"""


async def _upsert_works(conn: Conn, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """{(holder, title): work id}, creating what is missing: three statements however many works (one
    round trip per work made 10,000 one-work-each targets take seconds). Sorted inserts take the unique
    index's locks in one order, so two bulk requests cannot deadlock on them; a conflicting insert of a
    concurrent transaction is waited for, then seen by the SELECT (READ COMMITTED takes a new snapshot)."""
    holders, titles = [h for h, _ in pairs], [w for _, w in pairs]
    await conn.execute(_HOLDERS, sorted(set(holders)))
    await conn.execute(_WORKS, holders, titles)
    return {(r["holder"], r["title"]): r["id"] for r in await conn.fetch(_WORK_IDS, holders, titles)}


def _record(i: int, spec: TargetSpec, work_id: int) -> tuple[Any, ...]:
    m = spec.meta
    return (i, work_id, spec.infohash_v1, spec.infohash_v2, spec.kind, spec.display_name, list(spec.trackers),
            spec.info, m.name if m else None, m.total_size if m else None, m.piece_length if m else None,
            m.num_pieces if m else None, list(spec.peer_hints))
