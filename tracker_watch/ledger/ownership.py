"""Which node monitors which swarm: leases in `swarm_leases`, renewed by each node's heartbeat.

The unit is the swarm (view `active_target_swarms`: the libtorrent torrent a target's infohashes name; a
hybrid counts once), not the target: two rights holders who registered one torrent get one node in its
swarm, and each holder's target keeps its own evidence. `beat()` still answers in target ids (every active
target of every swarm held), which is what the watchlist runs.

One heartbeat is one transaction:
  1. the node's row in `nodes` says it is alive (capacity, version, spool depth); a drained node
     (`tracker-watch node drain`) hands every lease back and takes none;
  2. it renews its own leases (those another node took over after they lapsed are lost) and hands back
     leases of swarms that no longer have an active target;
  3. fair share = ceil(active swarms / live undrained nodes), capped by `node.max_targets` (which counts
     swarms: a swarm costs one torrent and its connections however many holders registered it). A node
     above its share hands the surplus back when another live node has room below its share;
  4. it takes free swarms (never leased, released, or lapsed) up to its share; two nodes beating at once
     never take the same swarm (the conflict on `swarm_leases`' key decides, the loser skips it);
  5. swarms still free after two heartbeats (every other node is full) are taken up to capacity.
Every take bumps the swarm's `epoch` and opens a term in `lease_terms` (who held it from when).
Expiry is judged by the database clock (`now()`). Fencing is the node's own: `valid()` is empty once
`lease_ttl_s − heartbeat_s` have passed since the start of the last heartbeat that committed, earlier than
any other node can take the leases (their expiry is that heartbeat's `now()` + TTL): a node cut off from
the database stops its swarms before another starts them (docs/scaling.md, "Fencing").
Leases are mirrored into the previous version's `target_leases` so both versions share out the swarms
during a rolling upgrade (expand-then-contract; docs/scaling.md).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tracker_watch import log, metrics
from tracker_watch.ledger.db import Conn

_log = log.get("tracker_watch.ledger")

_ACTIVE = "(SELECT swarm, min(target_id) AS first FROM active_target_swarms GROUP BY swarm)"

# every active swarm gets a row once (epoch 0, never held), so that taking is an UPDATE of rows that two
# nodes beating at once can lock and skip, as they once did with targets
_PLACEHOLDERS = """
INSERT INTO swarm_leases (swarm, node, epoch, expires_at)
SELECT DISTINCT a.swarm, '', 0, '-infinity'::timestamptz FROM active_target_swarms a
WHERE NOT EXISTS (SELECT 1 FROM swarm_leases l WHERE l.swarm = a.swarm)
ORDER BY a.swarm ON CONFLICT DO NOTHING
"""

_TAKE = f"""
WITH free AS (
    SELECT l.swarm FROM swarm_leases l JOIN {_ACTIVE} s ON s.swarm = l.swarm
    WHERE l.expires_at < now()
      AND ($4::float8 IS NULL OR CASE WHEN l.epoch = 0 THEN (SELECT created_at FROM targets WHERE id = s.first)
                                      ELSE l.expires_at END < now() - $4 * interval '1 second')
      AND NOT EXISTS (  -- a node of the previous version holds one of its targets (rolling upgrade)
          SELECT 1 FROM active_target_swarms a JOIN target_leases tl ON tl.target_id = a.target_id
          WHERE a.swarm = s.swarm AND tl.node NOT IN ($1, '') AND tl.expires_at > now())
    ORDER BY l.swarm LIMIT $2
    FOR UPDATE OF l SKIP LOCKED
)
UPDATE swarm_leases sl SET node = $1, expires_at = now() + $3 * interval '1 second', acquired_at = now(),
                           epoch = sl.epoch + 1
FROM free WHERE sl.swarm = free.swarm
RETURNING sl.swarm, sl.epoch
"""

_HELD = """
greatest((SELECT count(*) FROM swarm_leases l WHERE l.node = n.name AND l.expires_at > now()),
         (SELECT count(DISTINCT a.swarm) FROM target_leases tl JOIN active_target_swarms a ON a.target_id = tl.target_id
          WHERE tl.node = n.name AND tl.expires_at > now()))
"""
_LIVE = "n.stopped_at IS NULL AND n.drained_at IS NULL AND n.heartbeat_at > now() - $2 * interval '1 second'"
_HUNGRY = f"SELECT EXISTS (SELECT 1 FROM nodes n WHERE n.name <> $1 AND {_LIVE} AND {_HELD} < least(n.max_targets, $3))"

_DISOWN = """
WITH gone AS (
    UPDATE swarm_leases SET node = '', expires_at = now() - interval '1 microsecond'
    WHERE node = $1 AND swarm = ANY($2::bytea[]) RETURNING swarm, epoch)
UPDATE lease_terms t SET ended_at = now() FROM gone WHERE t.swarm = gone.swarm AND t.epoch = gone.epoch
"""


@dataclass(frozen=True)
class Beat:
    owned: frozenset[int]  # target ids: every active target of every swarm held
    taken: frozenset[int]
    lost: frozenset[int]
    released: frozenset[int]
    share: int  # in swarms
    starved: bool  # active swarms nobody holds while this node is full
    swarms: dict[bytes, int] = field(default_factory=dict)  # swarm → epoch of this node's term
    drained: bool = False


class Ownership:
    def __init__(self, pool: Any, node: str, version: str, max_targets: int, ttl_s: float,
                 heartbeat_s: float, spool_depth: Callable[[], tuple[int, int]] | None = None) -> None:
        self.pool = pool
        self.node = node
        self.version = version
        self.max_targets = max_targets  # swarms
        self.ttl_s = ttl_s
        self.heartbeat_s = heartbeat_s
        self.spool_depth = spool_depth  # (records, bytes) waiting in the spool, reported with each beat
        self.owned: frozenset[int] = frozenset()
        self.swarms: dict[bytes, int] = {}
        self.valid_until = 0.0  # time.monotonic() after which this node must assume its leases are gone
        self._placed = -1  # target revision for which every active swarm had its swarm_leases row
        self._beats = 0

    def valid(self) -> frozenset[int]:
        """The targets this node may still run: none once its leases may have lapsed (fencing)."""
        return self.owned if time.monotonic() < self.valid_until else frozenset()

    async def beat(self) -> Beat:
        sent = time.monotonic()  # before the database's now(): our deadline falls before the expiry it sets
        records, size = self.spool_depth() if self.spool_depth is not None else (None, None)
        self._beats += 1
        async with self.pool.acquire() as conn:  # its own short transaction, when targets changed (and every
            # tenth beat: a revision can commit after a higher one, as the watchlist's full pass knows)
            revision = await conn.fetchval("SELECT coalesce(max(revision), 0) FROM targets")
            if revision != self._placed or self._beats % 10 == 0:
                await conn.execute(_PLACEHOLDERS)
                self._placed = revision
        async with self.pool.acquire() as conn, conn.transaction():
            drained = bool(await conn.fetchval(
                "INSERT INTO nodes (name, max_targets, version, spool_records, spool_bytes) "
                "VALUES ($1, $2, $3, $4, $5) "
                "ON CONFLICT (name) DO UPDATE SET max_targets = $2, version = $3, heartbeat_at = now(), "
                "stopped_at = NULL, spool_records = $4, spool_bytes = $5 RETURNING drained_at IS NOT NULL",
                self.node, self.max_targets, self.version, records, size))
            mine = {bytes(r["swarm"]): int(r["epoch"]) for r in await conn.fetch(
                "UPDATE swarm_leases SET expires_at = now() + $2 * interval '1 second' WHERE node = $1 "
                "RETURNING swarm, epoch", self.node, self.ttl_s)}
            idle = set(mine) - {bytes(r["swarm"]) for r in await conn.fetch(
                "SELECT DISTINCT swarm FROM active_target_swarms WHERE swarm = ANY($1::bytea[])", list(mine))}
            share = 0 if drained else await self._share(conn)
            released = set(mine) if drained else idle | await self._shed(conn, set(mine) - idle, share)
            await conn.execute(_DISOWN, self.node, list(released))
            released_ids = self.owned & {r["target_id"] for r in await conn.fetch(
                "SELECT target_id FROM active_target_swarms WHERE swarm = ANY($1::bytea[])", list(released))}
            mine = {s: e for s, e in mine.items() if s not in released}
            taken: dict[bytes, int] = {}
            if len(mine) < share:
                taken |= await self._take(conn, share - len(mine), None)
            if not drained and len(mine) + len(taken) < self.max_targets:  # what every other node left behind
                taken |= await self._take(conn, self.max_targets - len(mine) - len(taken), 2 * self.heartbeat_s)
            mine |= taken
            owned = frozenset(await self._targets(conn, mine))
            starved = not drained and len(mine) >= self.max_targets and bool(await conn.fetchval(
                f"SELECT EXISTS (SELECT 1 FROM {_ACTIVE} s LEFT JOIN swarm_leases l ON l.swarm = s.swarm "
                "WHERE l.swarm IS NULL OR l.expires_at < now())"))
        self.valid_until = sent + self.ttl_s - self.heartbeat_s
        before = self.owned
        self.owned, self.swarms = owned, mine
        taken_ids = owned - before
        lost = before - owned - released_ids
        self._count(len(taken), lost, len(released), starved)
        return Beat(owned, taken_ids, lost, frozenset(released_ids), share, starved, dict(mine), drained)

    async def pulse(self) -> tuple[Any, ...]:
        """Cheap signs that an early heartbeat is worth it: a new target revision, this node drained or
        undrained, a lease handed back somewhere (a drain or a stop: its swarms are free now), a node that
        started, stopped, was drained or undrained (the fair shares changed)."""
        row = await self.pool.fetchrow(
            "SELECT (SELECT coalesce(max(revision), 0) FROM targets) AS revision, "
            "(SELECT drained_at IS NOT NULL FROM nodes WHERE name = $1) AS drained, "
            "(SELECT max(ended_at) FROM lease_terms) AS ended, "
            "(SELECT count(*) FROM nodes WHERE stopped_at IS NULL AND drained_at IS NULL) AS serving", self.node)
        return (row["revision"], row["drained"], row["ended"], row["serving"])

    async def release_all(self) -> int:
        """Hand every lease back at once (shutdown): the other nodes take the swarms at their next beat."""
        async with self.pool.acquire() as conn, conn.transaction():
            mine = [r["swarm"] for r in await conn.fetch("SELECT swarm FROM swarm_leases WHERE node = $1", self.node)]
            await conn.execute(_DISOWN, self.node, mine)
            await conn.execute("DELETE FROM target_leases WHERE node = $1", self.node)
            await conn.execute("UPDATE nodes SET stopped_at = now() WHERE name = $1", self.node)
        metrics.LEASE_CHANGES.labels(change="released").inc(len(mine))
        metrics.LEASES.set(0)
        self.owned, self.swarms, self.valid_until = frozenset(), {}, 0.0
        return len(mine)

    async def _share(self, conn: Conn) -> int:
        live = await conn.fetchval(f"SELECT count(*) FROM nodes n WHERE $1::text IS NOT NULL AND {_LIVE}",
                                   self.node, self.ttl_s)
        active = await conn.fetchval("SELECT count(DISTINCT swarm) FROM active_target_swarms")
        return min(self.max_targets, math.ceil(int(active) / max(1, int(live))))

    async def _shed(self, conn: Conn, mine: set[bytes], share: int) -> set[bytes]:
        surplus = len(mine) - share
        if surplus <= 0 or not await conn.fetchval(_HUNGRY, self.node, self.ttl_s, share):
            return set()
        # disown (expire, node '') rather than delete, so that neither our renewal nor our "free for two
        # beats" rule hands them straight back to us; a node below its share takes them at its next beat
        rows = await conn.fetch("SELECT swarm FROM swarm_leases WHERE node = $1 AND swarm = ANY($3::bytea[]) "
                                "ORDER BY acquired_at DESC, swarm DESC LIMIT $2", self.node, surplus, list(mine))
        return {bytes(r["swarm"]) for r in rows}

    async def _take(self, conn: Conn, limit: int, free_for_s: float | None) -> dict[bytes, int]:
        rows = await conn.fetch(_TAKE, self.node, limit, self.ttl_s, free_for_s)
        taken = {bytes(r["swarm"]): int(r["epoch"]) for r in rows}
        if taken:  # the previous term of each (another node's, lapsed) ends where ours begins
            await conn.execute("UPDATE lease_terms SET ended_at = now() WHERE swarm = ANY($1::bytea[]) "
                               "AND ended_at IS NULL", list(taken))
            await conn.executemany("INSERT INTO lease_terms (swarm, epoch, node) VALUES ($1, $2, $3) "
                                   "ON CONFLICT DO NOTHING", [(s, e, self.node) for s, e in taken.items()])
        return taken

    async def _targets(self, conn: Conn, swarms: dict[bytes, int]) -> set[int]:
        """The active targets of our swarms, mirrored into the previous version's per-target leases."""
        ids = [r["target_id"] for r in await conn.fetch(
            "SELECT target_id FROM active_target_swarms WHERE swarm = ANY($1::bytea[])", list(swarms))]
        await conn.execute("DELETE FROM target_leases WHERE node = $1 "  # NOT IN (SELECT …): hashed, not n × m
                           "AND target_id NOT IN (SELECT unnest($2::bigint[]))", self.node, ids)
        await conn.execute(
            "INSERT INTO target_leases AS tl (target_id, node, expires_at) "
            "SELECT unnest($2::bigint[]), $1, now() + $3 * interval '1 second' ON CONFLICT (target_id) DO UPDATE "
            "SET node = EXCLUDED.node, expires_at = EXCLUDED.expires_at WHERE tl.node = $1 OR tl.expires_at < now()",
            self.node, ids, self.ttl_s)
        return set(ids)

    def _count(self, taken: int, lost: frozenset[int], released: int, starved: bool) -> None:
        metrics.LEASES.set(len(self.swarms))
        metrics.LEASE_CHANGES.labels(change="taken").inc(taken)
        metrics.LEASE_CHANGES.labels(change="lost").inc(len(lost))
        metrics.LEASE_CHANGES.labels(change="released").inc(released)
        if taken or lost or released:
            _log.info("leases_changed", swarms=len(self.swarms), owned=len(self.owned), taken=taken,
                      lost=len(lost), released=released)
        if starved:
            metrics.LIMIT_HITS.labels(limit="node.max_targets").inc()
            _log.warning("node_full", max_targets=self.max_targets,
                         note="active swarms are waiting for a node with room")
