"""Version N's lease code (per-target leases, migration 0005), frozen as it shipped before migration 0012.

Test equipment for the rolling-upgrade test: a node of the previous version running against the schema of
the next one, side by side with a node of the next version. Do not "fix" this file: it is history.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from tracker_watch import log, metrics
from tracker_watch.ledger.db import Conn

_log = log.get("tracker_watch.ledger")

_TAKE = """
WITH free AS (
    SELECT t.id FROM targets t LEFT JOIN target_leases l ON l.target_id = t.id
    WHERE t.status = 'active' AND (l.target_id IS NULL OR l.expires_at < now())
      AND ($4::float8 IS NULL OR coalesce(l.expires_at, t.created_at) < now() - $4 * interval '1 second')
    ORDER BY t.id LIMIT $2
    FOR UPDATE OF t SKIP LOCKED
)
INSERT INTO target_leases AS tl (target_id, node, expires_at)
SELECT id, $1, now() + $3 * interval '1 second' FROM free
ON CONFLICT (target_id) DO UPDATE SET node = EXCLUDED.node, expires_at = EXCLUDED.expires_at, acquired_at = now()
    WHERE tl.expires_at < now()
RETURNING target_id
"""

_HUNGRY = """
SELECT EXISTS (
    SELECT 1 FROM nodes n
    WHERE n.name <> $1 AND n.stopped_at IS NULL AND n.heartbeat_at > now() - $2 * interval '1 second'
      AND (SELECT count(*) FROM target_leases l WHERE l.node = n.name AND l.expires_at > now())
          < least(n.max_targets, $3))
"""


@dataclass(frozen=True)
class Beat:
    owned: frozenset[int]
    taken: frozenset[int]
    lost: frozenset[int]
    released: frozenset[int]
    share: int
    starved: bool  # active targets nobody holds while this node is full


class Ownership:
    def __init__(self, pool: Any, node: str, version: str, max_targets: int, ttl_s: float,
                 heartbeat_s: float) -> None:
        self.pool = pool
        self.node = node
        self.version = version
        self.max_targets = max_targets
        self.ttl_s = ttl_s
        self.heartbeat_s = heartbeat_s
        self.owned: frozenset[int] = frozenset()

    async def beat(self) -> Beat:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO nodes (name, max_targets, version) VALUES ($1, $2, $3) ON CONFLICT (name) DO UPDATE "
                "SET max_targets = $2, version = $3, heartbeat_at = now(), stopped_at = NULL",
                self.node, self.max_targets, self.version)
            await conn.execute("DELETE FROM target_leases l USING targets t WHERE l.node = $1 "
                               "AND t.id = l.target_id AND t.status <> 'active'", self.node)
            mine = {r["target_id"] for r in await conn.fetch(
                "UPDATE target_leases SET expires_at = now() + $2 * interval '1 second' WHERE node = $1 "
                "RETURNING target_id", self.node, self.ttl_s)}
            share = await self._share(conn)
            released = await self._shed(conn, mine, share)
            mine -= released
            taken: set[int] = set()
            if len(mine) < share:
                taken |= await self._take(conn, share - len(mine), None)
            if len(mine | taken) < self.max_targets:  # what every other node left behind
                taken |= await self._take(conn, self.max_targets - len(mine | taken), 2 * self.heartbeat_s)
            owned = frozenset(mine | taken)
            starved = len(owned) >= self.max_targets and bool(await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM targets t LEFT JOIN target_leases l ON l.target_id = t.id "
                "WHERE t.status = 'active' AND (l.target_id IS NULL OR l.expires_at < now()))"))
        lost = self.owned - owned - released
        self.owned = owned
        self._count(taken, lost, released, starved)
        return Beat(owned, frozenset(taken), frozenset(lost), frozenset(released), share, starved)

    async def release_all(self) -> int:
        """Hand every lease back at once (shutdown): the other nodes take the targets at their next beat."""
        async with self.pool.acquire() as conn, conn.transaction():
            released = await conn.fetch("DELETE FROM target_leases WHERE node = $1 RETURNING target_id", self.node)
            await conn.execute("UPDATE nodes SET stopped_at = now() WHERE name = $1", self.node)
        metrics.LEASE_CHANGES.labels(change="released").inc(len(released))
        metrics.LEASES.set(0)
        self.owned = frozenset()
        return len(released)

    async def _share(self, conn: Conn) -> int:
        live = await conn.fetchval("SELECT count(*) FROM nodes WHERE stopped_at IS NULL "
                                   "AND heartbeat_at > now() - $1 * interval '1 second'", self.ttl_s)
        active = await conn.fetchval("SELECT count(*) FROM targets WHERE status = 'active'")
        return min(self.max_targets, math.ceil(int(active) / max(1, int(live))))

    async def _shed(self, conn: Conn, mine: set[int], share: int) -> set[int]:
        surplus = len(mine) - share
        if surplus <= 0 or not await conn.fetchval(_HUNGRY, self.node, self.ttl_s, share):
            return set()
        # expire and disown (rather than delete), so that neither our renewal nor our "free for two beats"
        # rule hands them straight back to us; a node below its share takes them at its next beat
        rows = await conn.fetch(
            "UPDATE target_leases SET node = '', expires_at = now() - interval '1 microsecond' WHERE target_id IN ("
            "SELECT target_id FROM target_leases WHERE node = $1 ORDER BY acquired_at DESC, target_id DESC "
            "LIMIT $2) RETURNING target_id", self.node, surplus)
        return {r["target_id"] for r in rows}

    async def _take(self, conn: Conn, limit: int, free_for_s: float | None) -> set[int]:
        rows = await conn.fetch(_TAKE, self.node, limit, self.ttl_s, free_for_s)
        return {r["target_id"] for r in rows}

    def _count(self, taken: set[int], lost: frozenset[int], released: set[int], starved: bool) -> None:
        metrics.LEASES.set(len(self.owned))
        metrics.LEASE_CHANGES.labels(change="taken").inc(len(taken))
        metrics.LEASE_CHANGES.labels(change="lost").inc(len(lost))
        metrics.LEASE_CHANGES.labels(change="released").inc(len(released))
        if taken or lost or released:
            _log.info("leases_changed", owned=len(self.owned), taken=len(taken), lost=len(lost),
                      released=len(released))
        if starved:
            metrics.LIMIT_HITS.labels(limit="node.max_targets").inc()
            _log.warning("node_full", max_targets=self.max_targets,
                         note="active targets are waiting for a node with room")
