"""Writing evidence: observations, the incidents they fold into, and the node's hash chain over both.

One transaction per batch:
  1. lock this node's chain head (`chain_heads` row, FOR UPDATE);
  2. drop observations whose id is already stored (a retried or replayed batch);
  3. give the rest the next chain positions and hashes, COPY them in;
  4. upsert their incidents (COPY into a staging table, INSERT … ON CONFLICT … RETURNING) and append
     each changed incident's new state to the chain as an incident change;
  5. move the head, and sign a checkpoint when one is due.
Because positions are assigned inside the transaction, a failed attempt leaves no trace and a retry
gets the same result. The chain is per node: nodes never contend for one sequence.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tracker_watch import metrics
from tracker_watch.domain import chain
from tracker_watch.domain.evidence import OBSERVATION_FIELDS, Observation, utc_now_ms
from tracker_watch.domain.incidents import INCIDENT_CHANGE_FIELDS, fold
from tracker_watch.ledger import signing
from tracker_watch.ledger.db import Conn

CHAIN_COLUMNS = ("chain_seq", "content_hash", "prev_hash", "row_hash")
OBS_COLUMNS = OBSERVATION_FIELDS + CHAIN_COLUMNS
_INC_STAGE_COLUMNS = ("target_id", "ip", "window_start", "first_seen", "last_seen", "best_grade", "corrupt",
                      "ports", "pieces_verified", "bytes_verified", "observations")
_CHANGE_COLUMNS = ("node", "chain_seq", *INCIDENT_CHANGE_FIELDS, "content_hash", "prev_hash", "row_hash")

_STAGE_INCIDENTS = """
CREATE TEMP TABLE IF NOT EXISTS incidents_stage (
    target_id bigint, ip inet, window_start timestamptz, first_seen timestamptz, last_seen timestamptz,
    best_grade text, corrupt boolean, ports integer[], pieces_verified integer[], bytes_verified bigint,
    observations integer) ON COMMIT DELETE ROWS
"""
# rows are upserted (so locked) in key order, the one order every writer of incidents keeps (strikes.py's
# legal hold too): two transactions that lock rows in one global order can never wait on each other in a cycle
_UPSERT_INCIDENTS = f"""
INSERT INTO incidents AS i ({", ".join(_INC_STAGE_COLUMNS)})
SELECT {", ".join(_INC_STAGE_COLUMNS)} FROM incidents_stage ORDER BY target_id, ip, window_start
ON CONFLICT (target_id, ip, window_start) DO UPDATE SET
    first_seen = least(i.first_seen, EXCLUDED.first_seen),
    last_seen = greatest(i.last_seen, EXCLUDED.last_seen),
    best_grade = CASE WHEN grade_rank(EXCLUDED.best_grade) > grade_rank(i.best_grade)
                      THEN EXCLUDED.best_grade ELSE i.best_grade END,
    corrupt = i.corrupt OR EXCLUDED.corrupt,
    ports = ARRAY(SELECT DISTINCT p FROM unnest(i.ports || EXCLUDED.ports) AS p ORDER BY p),
    pieces_verified = ARRAY(SELECT DISTINCT p FROM unnest(i.pieces_verified || EXCLUDED.pieces_verified) AS p
                            ORDER BY p),
    bytes_verified = i.bytes_verified + EXCLUDED.bytes_verified,
    observations = i.observations + EXCLUDED.observations,
    updated_at = now()
RETURNING i.id AS incident_id, i.target_id, i.ip, i.window_start, i.first_seen, i.last_seen, i.best_grade,
          i.corrupt, i.ports, i.pieces_verified, i.bytes_verified, i.observations
"""


def observation_record(o: Observation, link: chain.Link) -> tuple[Any, ...]:
    values = [getattr(o, name) for name in OBSERVATION_FIELDS]
    values[OBSERVATION_FIELDS.index("source")] = o.source.value
    values[OBSERVATION_FIELDS.index("grade")] = o.grade.value
    return (*values, link.seq, link.content_hash, link.prev_hash, link.row_hash)


class EvidenceWriter:
    def __init__(self, pool: Any, node: str, key: Ed25519PrivateKey, window_s: int = 86400,
                 checkpoint_every: int = 10_000, checkpoint_interval_s: float = 60.0) -> None:
        self.pool = pool
        self.node = node
        self.key = key
        self.key_id = signing.key_id(signing.public_raw(key))
        self.window_s = window_s
        self.checkpoint_every = checkpoint_every
        self.checkpoint_interval_s = checkpoint_interval_s
        self._last_checkpoint = time.monotonic()
        self._since_checkpoint = 0

    async def write(self, batch: Sequence[Observation]) -> int:
        """Store the batch (skipping ids already stored); returns how many observations were new."""
        if not batch:
            return 0
        async with self.pool.acquire() as conn, conn.transaction():
            seq, head = await self._lock_head(conn)
            known = {r["id"] for r in await conn.fetch(
                "SELECT id FROM observations WHERE id = ANY($1::uuid[])", [o.id for o in batch])}
            new = list({o.id: o for o in batch if o.id not in known}.values())
            if not new:
                return 0
            links = chain.extend(self.node, seq, head,
                                 (chain.content_hash("observation", o.evidence_fields()) for o in new))
            await conn.copy_records_to_table(
                "observations", records=[observation_record(o, link) for o, link in zip(new, links, strict=True)],
                columns=OBS_COLUMNS)
            last = links[-1]
            last = await self._incidents(conn, new, last)
            await conn.execute("UPDATE chain_heads SET seq = $2, head_hash = $3 WHERE node = $1",
                               self.node, last.seq, last.row_hash)
            self._since_checkpoint += last.seq - seq
            if self._checkpoint_due():
                await self._checkpoint(conn, last.seq, last.row_hash)
        for o in new:  # after the commit: only what is stored is counted
            metrics.OBSERVATIONS.labels(grade=o.grade.value, source=o.source.value).inc()
        return len(new)

    async def _lock_head(self, conn: Conn) -> tuple[int, bytes]:
        await conn.execute("INSERT INTO chain_heads (node, seq, head_hash) VALUES ($1, 0, $2) "
                           "ON CONFLICT (node) DO NOTHING", self.node, chain.GENESIS)
        row = await conn.fetchrow("SELECT seq, head_hash FROM chain_heads WHERE node = $1 FOR UPDATE", self.node)
        assert row is not None
        return int(row["seq"]), bytes(row["head_hash"])

    async def _incidents(self, conn: Conn, new: list[Observation], last: chain.Link) -> chain.Link:
        deltas = fold(new, self.window_s)
        await conn.execute(_STAGE_INCIDENTS)
        await conn.copy_records_to_table("incidents_stage", columns=_INC_STAGE_COLUMNS, records=[
            (d.target_id, d.ip, d.window_start, d.first_seen, d.last_seen, d.best_grade.value, d.corrupt,
             sorted(d.ports), sorted(d.pieces_verified), d.bytes_verified, d.observations) for d in deltas])
        changed = sorted(await conn.fetch(_UPSERT_INCIDENTS), key=lambda r: r["incident_id"])
        metrics.INCIDENT_CHANGES.inc(len(changed))
        recorded_at = utc_now_ms()
        states = [{**dict(r), "ip": str(r["ip"]), "recorded_at": recorded_at} for r in changed]
        links = chain.extend(self.node, last.seq, last.row_hash,
                             (chain.content_hash("incident_change", s) for s in states))
        await conn.copy_records_to_table("incident_changes", columns=_CHANGE_COLUMNS, records=[
            (self.node, link.seq, *(s[f] for f in INCIDENT_CHANGE_FIELDS), link.content_hash, link.prev_hash,
             link.row_hash) for s, link in zip(states, links, strict=True)])
        return links[-1] if links else last

    def _checkpoint_due(self) -> bool:
        return (self._since_checkpoint >= self.checkpoint_every
                or time.monotonic() - self._last_checkpoint >= self.checkpoint_interval_s)

    async def _checkpoint(self, conn: Conn, seq: int, head_hash: bytes) -> None:
        await sign_checkpoint(conn, self.node, self.key, seq, head_hash)
        self._since_checkpoint = 0
        self._last_checkpoint = time.monotonic()

    async def checkpoint(self) -> int | None:
        """Sign the current head now (at shutdown, or on demand); returns its position."""
        async with self.pool.acquire() as conn, conn.transaction():
            seq, head = await self._lock_head(conn)
            if seq == 0:
                return None
            if await conn.fetchval("SELECT 1 FROM chain_checkpoints WHERE node = $1 AND seq = $2", self.node, seq):
                return seq
            await self._checkpoint(conn, seq, head)
            return seq


async def sign_checkpoint(conn: Conn, node: str, key: Ed25519PrivateKey, seq: int, head_hash: bytes) -> None:
    """Register the key and sign (node, seq, head) — inside the caller's transaction, head locked."""
    public = signing.public_raw(key)
    key_id = signing.key_id(public)
    await conn.execute("INSERT INTO signing_keys (key_id, node, public_key) VALUES ($1, $2, $3) "
                       "ON CONFLICT (key_id) DO NOTHING", key_id, node, public)
    signed_at = utc_now_ms()
    signature = key.sign(chain.checkpoint_message(node, seq, head_hash, signed_at))
    await conn.execute("INSERT INTO chain_checkpoints (node, seq, head_hash, signed_at, key_id, signature) "
                       "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (node, seq) DO NOTHING",
                       node, seq, head_hash, signed_at, key_id, signature)
