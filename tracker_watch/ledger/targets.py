"""Rights holders, works and targets: what is registered and what the swarm engine should watch."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from tracker_watch.domain.targets import TargetSpec
from tracker_watch.domain.torrents import TorrentMeta
from tracker_watch.ledger.db import Conn


@dataclass(frozen=True)
class TargetRow:
    id: int
    work_id: int
    holder_id: int
    holder: str
    work: str
    infohash_v1: bytes | None
    infohash_v2: bytes | None
    input_kind: str
    display_name: str | None
    trackers: tuple[str, ...]
    status: str
    info: bytes | None
    name: str | None
    total_size: int | None
    num_pieces: int | None
    created_at: datetime
    revision: int
    error: str | None = None  # why a node could not watch it (status 'error')
    peer_hints: tuple[str, ...] = ()  # magnet x.pe addresses ("ip:port", "[ip]:port"), see domain/targets.py

    @property
    def key(self) -> str:
        return (self.infohash_v1 or self.infohash_v2 or b"").hex()


_SELECT = """
    SELECT t.id, t.work_id, h.id AS holder_id, h.name AS holder, w.title AS work, t.infohash_v1, t.infohash_v2,
           t.input_kind, t.display_name, t.trackers, t.status, t.info, t.name, t.total_size, t.num_pieces, t.created_at,
           t.revision, t.error, t.peer_hints
    FROM targets t JOIN works w ON w.id = t.work_id JOIN rights_holders h ON h.id = w.holder_id
"""


def _row(r: asyncpg.Record) -> TargetRow:
    return TargetRow(**{**dict(r), "trackers": tuple(r["trackers"]), "peer_hints": tuple(r["peer_hints"])})


async def work_of(conn: Conn, holder: str, work: str) -> int:
    """The id of the rights holder's work, both created if new."""
    holder_id = await conn.fetchval(
        "INSERT INTO rights_holders (name) VALUES ($1) ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name "
        "RETURNING id", holder)
    return int(await conn.fetchval(
        "INSERT INTO works (holder_id, title) VALUES ($1, $2) "
        "ON CONFLICT (holder_id, title) DO UPDATE SET title = EXCLUDED.title RETURNING id", holder_id, work))


class TargetStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def register(self, spec: TargetSpec, holder: str, work: str, actor: str) -> tuple[TargetRow, bool]:
        """Register (or find) the target; returns (row, created). Idempotent for the same work and infohash."""
        async with self.pool.acquire() as conn, conn.transaction():
            work_id = await work_of(conn, holder, work)
            existing = await conn.fetchval(
                "SELECT id FROM targets WHERE work_id = $1 AND status <> 'deleted' AND "
                "(infohash_v1 = $2 OR infohash_v2 = $3)", work_id, spec.infohash_v1, spec.infohash_v2)
            if existing is not None:
                return await self._get(conn, existing), False
            meta = spec.meta
            target_id = await conn.fetchval(
                """INSERT INTO targets (work_id, infohash_v1, infohash_v2, input_kind, display_name, trackers,
                                        info, name, total_size, piece_length, num_pieces, metadata_at, peer_hints)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, CASE WHEN $7::bytea IS NULL THEN NULL
                           ELSE now() END, $12) RETURNING id""",
                work_id, spec.infohash_v1, spec.infohash_v2, spec.kind, spec.display_name, list(spec.trackers),
                spec.info, meta.name if meta else None, meta.total_size if meta else None,
                meta.piece_length if meta else None, meta.num_pieces if meta else None, list(spec.peer_hints))
            await conn.execute(
                "INSERT INTO audit_log (actor, action, object, detail) VALUES ($1, 'target.register', $2, $3)",
                actor, f"target:{target_id}", json.dumps({"holder": holder, "work": work, "infohash": spec.key}))
            return await self._get(conn, target_id), True

    async def _get(self, conn: Conn, target_id: int) -> TargetRow:
        r = await conn.fetchrow(_SELECT + " WHERE t.id = $1", target_id)
        assert r is not None
        return _row(r)

    async def get(self, target_id: int) -> TargetRow | None:
        r = await self.pool.fetchrow(_SELECT + " WHERE t.id = $1", target_id)
        return _row(r) if r else None

    async def list_all(self, include_deleted: bool = False) -> list[TargetRow]:
        where = "" if include_deleted else " WHERE t.status <> 'deleted'"
        return [_row(r) for r in await self.pool.fetch(_SELECT + where + " ORDER BY t.id")]

    async def page(self, holder_id: int | None, status: str | None, after: int, limit: int) -> list[TargetRow]:
        """Targets by id after `after`, of one rights holder (or all), optionally of one status."""
        rows = await self.pool.fetch(
            _SELECT + " WHERE t.id > $1 AND ($2::bigint IS NULL OR h.id = $2) AND ($3::text IS NULL OR t.status = $3)"
            " ORDER BY t.id LIMIT $4", after, holder_id, status, limit)
        return [_row(r) for r in rows]

    async def changed_since(self, revision: int, ids: set[int] | None = None) -> list[TargetRow]:
        """Targets whose revision grew past `revision` (only those in `ids`, when given)."""
        if ids is None:
            rows = await self.pool.fetch(_SELECT + " WHERE t.revision > $1 ORDER BY t.revision", revision)
        else:
            rows = await self.pool.fetch(_SELECT + " WHERE t.revision > $1 AND t.id = ANY($2::bigint[]) "
                                         "ORDER BY t.revision", revision, sorted(ids))
        return [_row(r) for r in rows]

    async def get_many(self, ids: set[int]) -> list[TargetRow]:
        rows = await self.pool.fetch(_SELECT + " WHERE t.id = ANY($1::bigint[]) ORDER BY t.id", sorted(ids))
        return [_row(r) for r in rows]

    async def active_ids(self) -> dict[int, int]:
        """{target id: revision} of every active target: the reconcile pass's view of what should run."""
        rows = await self.pool.fetch("SELECT id, revision FROM targets WHERE status = 'active'")
        return {r["id"]: r["revision"] for r in rows}

    async def set_metadata(self, target_ids: list[int], info: bytes, meta: TorrentMeta) -> None:
        """Record metadata fetched from the swarm. The registered infohashes stay as registered."""
        await self.pool.execute(
            """UPDATE targets SET info = $2, name = $3, total_size = $4, piece_length = $5, num_pieces = $6,
                      metadata_at = now()
               WHERE id = ANY($1::bigint[]) AND info IS NULL""",
            target_ids, info, meta.name, meta.total_size, meta.piece_length, meta.num_pieces)

    async def set_metadata_many(self, items: Sequence[tuple[Sequence[int], bytes, TorrentMeta]]) -> None:
        """`set_metadata` for many swarms in one statement (thousands of swarms get their metadata within
        seconds of each other; one statement each queued them all for the pool's connections)."""
        rows = [(i, info, meta) for ids, info, meta in items for i in ids]
        if not rows:
            return
        await self.pool.execute(
            """UPDATE targets t SET info = v.info, name = v.name, total_size = v.total_size,
                      piece_length = v.piece_length, num_pieces = v.num_pieces, metadata_at = now()
               FROM unnest($1::bigint[], $2::bytea[], $3::text[], $4::bigint[], $5::integer[], $6::integer[])
                    AS v(id, info, name, total_size, piece_length, num_pieces)
               WHERE t.id = v.id AND t.info IS NULL""",
            [r[0] for r in rows], [r[1] for r in rows], [r[2].name for r in rows], [r[2].total_size for r in rows],
            [r[2].piece_length for r in rows], [r[2].num_pieces for r in rows])

    async def mark_error(self, target_ids: list[int], reason: str, actor: str) -> list[int]:
        """Set active targets aside as unwatchable, with the reason; returns the ids that changed."""
        reason = " ".join(reason.replace("\x00", " ").split())[:1000] or "unknown error"
        async with self.pool.acquire() as conn, conn.transaction():
            ids = [r["id"] for r in await conn.fetch(
                "UPDATE targets SET status = 'error', error = $2, error_at = now() "
                "WHERE id = ANY($1::bigint[]) AND status = 'active' RETURNING id", target_ids, reason)]
            await conn.executemany(
                "INSERT INTO audit_log (actor, action, object, detail) VALUES ($1, 'target.error', $2, $3)",
                [(actor, f"target:{i}", json.dumps({"error": reason})) for i in ids])
            return ids

    async def set_status(self, target_id: int, status: str, actor: str) -> bool:
        async with self.pool.acquire() as conn, conn.transaction():
            # resuming a target that was set aside tries it again, so its old error goes
            done = await conn.execute("UPDATE targets SET status = $2, error = NULL, error_at = NULL "
                                      "WHERE id = $1 AND status <> 'deleted'", target_id, status)
            if done.endswith(" 0"):
                return False
            await conn.execute(
                "INSERT INTO audit_log (actor, action, object, detail) VALUES ($1, $2, $3, '{}')",
                actor, f"target.{status}", f"target:{target_id}")
            return True
