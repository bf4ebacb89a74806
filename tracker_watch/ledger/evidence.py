"""Writing evidence: observations, the incidents they fold into, and the node's hash chain over both.

One transaction per batch:
  1. lock this node's chain head (`chain_heads` row, FOR UPDATE);
  2. drop observations whose id is already stored (a retried or replayed batch);
  3. give the rest the next chain positions and hashes, COPY them in;
  4. upsert their incidents (COPY into a staging table, INSERT … ON CONFLICT … RETURNING) and append
     the new state of each incident whose evidence changed — created, or its grade, corrupt flag, ports
     or verified pieces grew — to the chain as an incident change (a touch that only moves last_seen and
     the counters is not chained: those are the fold of the incident's observations, each chained);
  5. move the head, and sign a checkpoint when one is due.
New rows are chain format v2 (domain/chain_v2.py: a fixed binary encoding, ~3× cheaper to hash than
v1's canonical JSON); v1 rows written before stay as they are and verify as v1.
Because positions are assigned inside the transaction, a failed attempt leaves no trace and a retry
gets the same result. The chain is per node: nodes never contend for one sequence.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tracker_watch import metrics
from tracker_watch.domain import chain
from tracker_watch.domain.evidence import OBSERVATION_FIELDS, Observation, utc_now_ms
from tracker_watch.domain.incidents import INCIDENT_CHANGE_FIELDS
from tracker_watch.ledger import copy_binary, evidence_prep, signing
from tracker_watch.ledger.db import Conn
from tracker_watch.ledger.evidence_prep import (
    NO_TIME,
    Prepared,
    content_hashes,
    observation_values,
    packed,
    prepare,
    prepared_from,
    staged,
)

FORMAT = evidence_prep.FORMAT  # the chain format new rows are written in
CHAIN_COLUMNS = ("chain_seq", "content_hash", "prev_hash", "row_hash", "chain_format")
OBS_COLUMNS = OBSERVATION_FIELDS + CHAIN_COLUMNS
_INC_STAGE_COLUMNS = ("target_id", "ip", "window_start", "first_seen", "last_seen", "best_grade", "corrupt",
                      "ports", "pieces_verified", "bytes_verified", "observations")
_RETURNED = INCIDENT_CHANGE_FIELDS[:-1]  # all but recorded_at, which the writer adds
assert _RETURNED[2] == "ip"
_CHANGE_COLUMNS = ("node", *CHAIN_COLUMNS[:1], *INCIDENT_CHANGE_FIELDS, *CHAIN_COLUMNS[1:])

_STAGE_INCIDENTS = """
CREATE TEMP TABLE IF NOT EXISTS incidents_stage (
    target_id bigint, ip inet, window_start timestamptz, first_seen timestamptz, last_seen timestamptz,
    best_grade text, corrupt boolean, ports integer[], pieces_verified integer[], bytes_verified bigint,
    observations integer) ON COMMIT DELETE ROWS
"""
# rows are upserted (so locked) in key order, the one order every writer of incidents keeps (strikes.py's
# legal hold too): two transactions that lock rows in one global order can never wait on each other in a cycle
# Arrays merged only when the delta brings something new: most touches repeat a known port and no piece,
# and the DISTINCT-unnest-sort subquery was the upsert's costliest part per row.
_MERGE = ("CASE WHEN EXCLUDED.{c} <@ i.{c} THEN i.{c} "
          "ELSE ARRAY(SELECT DISTINCT p FROM unnest(i.{c} || EXCLUDED.{c}) AS p ORDER BY p) END")
_RETURNING = ("i.id AS incident_id, i.target_id, i.ip, i.window_start, i.first_seen, i.last_seen, i.best_grade, "
              "i.corrupt, i.ports, i.pieces_verified, i.bytes_verified, i.observations")
_UPSERT = f"""
INSERT INTO incidents AS i ({", ".join(_INC_STAGE_COLUMNS)})
SELECT {", ".join(_INC_STAGE_COLUMNS)} FROM incidents_stage ORDER BY target_id, ip, window_start
ON CONFLICT (target_id, ip, window_start) DO UPDATE SET
    first_seen = least(i.first_seen, EXCLUDED.first_seen),
    last_seen = greatest(i.last_seen, EXCLUDED.last_seen),
    best_grade = CASE WHEN grade_rank(EXCLUDED.best_grade) > grade_rank(i.best_grade)
                      THEN EXCLUDED.best_grade ELSE i.best_grade END,
    corrupt = i.corrupt OR EXCLUDED.corrupt,
    ports = {_MERGE.format(c="ports")},
    pieces_verified = {_MERGE.format(c="pieces_verified")},
    bytes_verified = i.bytes_verified + EXCLUDED.bytes_verified,
    observations = i.observations + EXCLUDED.observations,
    updated_at = now()
RETURNING {_RETURNING}
"""
# The upsert, and whether it changed each incident's evidence (created, or its grade, corrupt flag, ports or
# pieces moved), in one statement: the outer query reads `incidents` in the statement's snapshot, before
# the upsert's own writes, so `o` is the row as it was (none for a created incident). The snapshot can
# only be older than the row the upsert merged into, and these fields only grow, so a stale read can
# only add a change row, never lose one. No old row (created) is distinct from any row: a change.
# The old row is looked up per upserted row by primary key (a scalar subquery, which the planner neither
# joins nor hashes), not joined: the planner hash-joined the whole of `incidents` into every batch (a
# sequential scan that grows with the table; 4.3 of the upsert's 11 ms at 12,000 incidents).
# Only the changed incidents come back ($1: every touch, for bench.ingestion --levers): a touch that changes
# nothing needs no row in the client, and every returned row is decoded by asyncpg inside the transaction,
# on the writer's critical path. The address comes back as text (`host`), which the writer packs with
# inet_pton, rather than as an `ipaddress` object (~2 µs a row); the chain encodes both alike.
_UPSERT_INCIDENTS = f"""
WITH up AS ({_UPSERT})
SELECT up.incident_id, up.target_id, host(up.ip) AS ip, up.window_start, up.first_seen, up.last_seen,
       up.best_grade, up.corrupt, up.ports, up.pieces_verified, up.bytes_verified, up.observations
FROM up
WHERE $1 OR (SELECT ROW(o.best_grade, o.corrupt, o.ports, o.pieces_verified) FROM incidents o
             WHERE o.id = up.incident_id) IS DISTINCT FROM ROW(up.best_grade, up.corrupt, up.ports, up.pieces_verified)
ORDER BY up.incident_id
"""


class EvidenceWriter:
    def __init__(self, pool: Any, node: str, key: Ed25519PrivateKey, window_s: int = 86400,
                 checkpoint_every: int = 10_000, checkpoint_interval_s: float = 60.0,
                 chain_format: int = FORMAT, chain_every_touch: bool = False) -> None:
        self.pool = pool
        self.chain_format = chain_format  # 1 only to test that chains written before v2 still verify
        self.chain_every_touch = chain_every_touch  # the behaviour before v2, for bench.ingestion --levers
        self.node = node
        self.key = key
        self.key_id = signing.key_id(signing.public_raw(key))
        self.window_s = window_s
        self.checkpoint_every = checkpoint_every
        self.checkpoint_interval_s = checkpoint_interval_s
        self._last_checkpoint = time.monotonic()
        self._since_checkpoint = 0
        # Set while PostgreSQL has this writer's heavy work in hand (the COPYs, the upsert) or no transaction is
        # open; clear during the transaction's short round trips (lock, replay check, head, commit) and its own
        # Python. sinks.InOrder prepares the next batch only while it is set: otherwise its slices fill the
        # short round trips, each of which then waits a slice with PostgreSQL idle, and the preparation
        # stretches the transaction instead of overlapping it (BENCHMARKS.md, "Ingestion", fourth pass).
        self.overlap = asyncio.Event()
        self.overlap.set()
        # what a committed batch stored, for the metrics; the writer process sends it to the daemon instead
        self.on_stored: Callable[[Counter[tuple[str, str]], int], None] = count_stored

    def prepare(self, batch: Sequence[Observation]) -> Prepared:
        """The database-independent part of writing `batch`; pure CPU."""
        return prepare(batch, self.window_s, self.chain_format)

    def prepare_rows(self, batch: Sequence[Observation]) -> Prepared:
        """`prepare` of a slice of a batch, less the incident fold (which needs the whole batch): for
        `join_prepared`, so that a batch can be prepared in slices between other work on the event loop."""
        values = [observation_values(o) for o in batch]
        return prepared_from(list(batch), values, b"", 0, self.chain_format)

    def join_prepared(self, parts: Sequence[Prepared]) -> Prepared:
        """The slices of `prepare_rows` as one prepared batch (what `prepare` of the whole would give)."""
        observations = [o for p in parts for o in p.again()]
        if len({o.id for o in observations}) != len(observations):  # an id twice in a batch: rare, redo
            return self.prepare(observations)
        return Prepared([i for p in parts for i in p.ids], min((p.first_at for p in parts), default=NO_TIME),
                        max((p.last_at for p in parts), default=NO_TIME), sum((p.counts for p in parts), Counter()),
                        [c for p in parts for c in p.contents], *staged(observations, self.window_s),
                        self.chain_format, [x for p in parts for x in p.prefixes], lambda: observations)

    async def write(self, batch: Sequence[Observation]) -> int:
        """Store the batch (skipping ids already stored); returns how many observations were new."""
        return await self.write_prepared(self.prepare(batch))

    async def write_prepared(self, p: Prepared) -> int:
        """Store a prepared batch (skipping ids already stored); returns how many observations were new."""
        if not p.ids:
            return 0
        self.overlap.clear()
        try:
            return await self._write_prepared(p)
        finally:
            self.overlap.set()

    @contextmanager
    def _heavy(self) -> Iterator[None]:
        """Around a statement that keeps PostgreSQL busy for a while: the next batch may be prepared."""
        self.overlap.set()
        try:
            yield
        finally:
            self.overlap.clear()

    async def _write_prepared(self, p: Prepared) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            seq, head = await self._lock_head(conn)
            # a replay carries its original time: the bounds keep the lookup to the batch's day partitions
            known = {r["id"] for r in await conn.fetch(
                "SELECT id FROM observations WHERE id = ANY($1::uuid[]) AND observed_at BETWEEN $2 AND $3",
                p.ids, p.first_at, p.last_at)}
            if known:  # a replayed batch: only the rest is new, and only the rest folds into incidents (rare:
                # prepared again here, in full)
                new = [o for o in p.again() if o.id not in known]
                if not new:
                    return 0
                p = prepare(new, self.window_s, p.fmt)
            links = chain.extend(self.node, seq, head, p.contents, p.fmt)
            # rows encoded while preparing; only their chain columns are encoded here (copy_binary.py)
            suffix = copy_binary.chain_suffix
            rows = copy_binary.source(b"".join([
                copy_binary.HEADER, *[pre + suffix(link.seq, link.content_hash, link.prev_hash, link.row_hash, p.fmt)
                                      for pre, link in zip(p.prefixes, links, strict=True)], copy_binary.TRAILER]))
            with self._heavy():
                await conn.copy_to_table("observations", columns=OBS_COLUMNS, format="binary", source=rows)
            last = await self._incidents(conn, p.stage, links[-1], p.fmt)
            await conn.execute("UPDATE chain_heads SET seq = $2, head_hash = $3 WHERE node = $1",
                               self.node, last.seq, last.row_hash)
            self._since_checkpoint += last.seq - seq
            if self._checkpoint_due():
                await self._checkpoint(conn, last.seq, last.row_hash)
        # after the commit: only what is stored is counted
        self.on_stored(p.counts, p.staged)
        return len(p.ids)

    async def _lock_head(self, conn: Conn) -> tuple[int, bytes]:
        await conn.execute("INSERT INTO chain_heads (node, seq, head_hash) VALUES ($1, 0, $2) "
                           "ON CONFLICT (node) DO NOTHING", self.node, chain.GENESIS)
        row = await conn.fetchrow("SELECT seq, head_hash FROM chain_heads WHERE node = $1 FOR UPDATE", self.node)
        assert row is not None
        return int(row["seq"]), bytes(row["head_hash"])

    async def _incidents(self, conn: Conn, stage: bytes, last: chain.Link, fmt: int) -> chain.Link:
        await conn.execute(_STAGE_INCIDENTS)
        with self._heavy():
            await conn.copy_to_table("incidents_stage", columns=_INC_STAGE_COLUMNS, format="binary",
                                     source=copy_binary.source(stage))
            changed = await conn.fetch(_UPSERT_INCIDENTS, self.chain_every_touch)  # in incident_id order
        recorded_at = utc_now_ms()
        states = [(*(r[f] for f in _RETURNED), recorded_at) for r in changed]
        links = chain.extend(self.node, last.seq, last.row_hash, content_hashes("incident_change", states, fmt), fmt)
        records = [(self.node, link.seq, *s[:2], packed(s[2]), *s[3:], link.content_hash, link.prev_hash,
                    link.row_hash, fmt) for s, link in zip(states, links, strict=True)]
        with self._heavy():
            await conn.copy_records_to_table("incident_changes", columns=_CHANGE_COLUMNS, records=records)
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


def count_stored(observations: Counter[tuple[str, str]], incident_touches: int) -> None:
    """Metrics of a committed batch: observations by (grade, source), incidents touched."""
    for (grade, source), n in observations.items():
        metrics.OBSERVATIONS.labels(grade=grade, source=source).inc(n)
    metrics.INCIDENT_CHANGES.inc(incident_touches)


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
