"""`tracker-watch ledger verify`: walk every node's chain in the database and check its checkpoints.

Rows are read in position order in chunks (observations and incident changes merged), their content
hashes recomputed from the stored fields, and the walk in domain/chain.py reports the first edited,
deleted, inserted or reordered row. Checkpoints must carry a valid Ed25519 signature of a registered
key and name a head that is in the chain; a checkpoint beyond the chain's end means rows were cut off.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from tracker_watch.domain import chain
from tracker_watch.domain.evidence import OBSERVATION_FIELDS
from tracker_watch.domain.incidents import INCIDENT_CHANGE_FIELDS
from tracker_watch.ledger import signing
from tracker_watch.ledger.db import Conn

CHUNK = 50_000


@dataclass
class NodeReport:
    node: str
    rows: int = 0
    redacted: int = 0
    checkpoints: int = 0
    finding: chain.Finding | None = None


@dataclass
class LedgerReport:
    nodes: list[NodeReport] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(n.finding is None for n in self.nodes)

    @property
    def rows(self) -> int:
        return sum(n.rows for n in self.nodes)


def _recompute(r: Any, kind: str, names: tuple[str, ...]) -> bytes | None:
    """The row's content hash recomputed in its own chain format; None when redacted."""
    if r["redacted_at"]:
        return None
    if r["chain_format"] not in chain.FORMATS:
        return b""  # no such format: reported as edited (the walk names the row)
    return chain.content_hash(kind, {f: r[f] for f in names}, r["chain_format"])


def observation_row(r: Any) -> chain.ChainRow:
    return chain.ChainRow(r["node"], r["chain_seq"], "observation", str(r["id"]), bytes(r["content_hash"]),
                          bytes(r["prev_hash"]), bytes(r["row_hash"]), _recompute(r, "observation", OBSERVATION_FIELDS),
                          r["chain_format"])


def incident_change_row(r: Any) -> chain.ChainRow:
    return chain.ChainRow(r["node"], r["chain_seq"], "incident_change", f"incident {r['incident_id']}",
                          bytes(r["content_hash"]), bytes(r["prev_hash"]), bytes(r["row_hash"]),
                          _recompute(r, "incident_change", INCIDENT_CHANGE_FIELDS), r["chain_format"])


async def chunks(conn: Conn, node: str, after: int = 0) -> AsyncIterator[list[chain.ChainRow]]:
    """Rows of one node's chain past `after` in seq order, a chunk at a time (bounded memory on long chains)."""
    while True:
        obs = await conn.fetch("SELECT * FROM observations WHERE node = $1 AND chain_seq > $2 "
                               "ORDER BY chain_seq LIMIT $3", node, after, CHUNK)
        changes = await conn.fetch("SELECT * FROM incident_changes WHERE node = $1 AND chain_seq > $2 "
                                   "ORDER BY chain_seq LIMIT $3", node, after, CHUNK)
        rows = sorted([observation_row(r) for r in obs] + [incident_change_row(r) for r in changes],
                      key=lambda r: r.seq)
        if not rows:
            return
        # only positions below the smaller of the two chunk ends are complete
        limit = min(obs[-1]["chain_seq"] if len(obs) == CHUNK else rows[-1].seq,
                    changes[-1]["chain_seq"] if len(changes) == CHUNK else rows[-1].seq)
        chunk = [r for r in rows if r.seq <= limit]
        yield chunk
        after = chunk[-1].seq


async def verify_ledger(conn: Conn) -> LedgerReport:
    if not conn.is_in_transaction():
        # one snapshot: observations and incident changes are read by separate queries, and a batch a
        # running daemon commits between them would look like a gap in the chain
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            return await verify_ledger(conn)
    nodes = [r["node"] for r in await conn.fetch(
        "SELECT node FROM observations WHERE chain_seq IS NOT NULL UNION SELECT node FROM incident_changes "
        "UNION SELECT node FROM chain_checkpoints ORDER BY 1")]
    report = LedgerReport()
    for node in nodes:
        report.nodes.append(await _verify_node(conn, node))
    # every evidence row is written with its chain position; one without is an insertion by hand
    stray = await conn.fetch("SELECT id, node FROM observations WHERE chain_seq IS NULL ORDER BY observed_at LIMIT 1")
    if stray:
        total = await conn.fetchval("SELECT count(*) FROM observations WHERE chain_seq IS NULL")
        report.nodes.append(NodeReport(stray[0]["node"], finding=chain.Finding(
            "inserted", stray[0]["node"], 0, "observation", str(stray[0]["id"]),
            f"{total} observation rows belong to no chain")))
    return report


async def _verify_node(conn: Conn, node: str) -> NodeReport:
    out = NodeReport(node)
    checkpoints = {r["seq"]: r for r in await conn.fetch(
        "SELECT c.*, k.public_key FROM chain_checkpoints c LEFT JOIN signing_keys k USING (key_id) "
        "WHERE c.node = $1", node)}
    out.checkpoints = len(checkpoints)
    state = chain.WalkState()
    heads: dict[int, bytes] = {}
    async for rows in chunks(conn, node):
        result = chain.verify_chain(node, rows, state)
        out.rows += result.rows
        out.redacted += result.redacted
        if result.finding is not None:
            out.finding = result.finding
            return out
        heads.update((r.seq, r.row_hash) for r in rows if r.seq in checkpoints)
    for seq, cp in sorted(checkpoints.items()):
        problem = _check_checkpoint(node, cp, heads.get(seq), state.seq)
        if problem is not None:
            out.finding = problem
            break
    return out


def _check_checkpoint(node: str, cp: Any, head: bytes | None, last_seq: int) -> chain.Finding | None:
    ref = f"checkpoint at {cp['seq']}"
    message = chain.checkpoint_message(node, cp["seq"], bytes(cp["head_hash"]), cp["signed_at"])
    if cp["public_key"] is None or not signing.verify(bytes(cp["public_key"]), bytes(cp["signature"]), message):
        return chain.Finding("edited", node, cp["seq"], "checkpoint", ref, "its signature does not verify")
    if cp["seq"] > last_seq:
        return chain.Finding("deleted", node, last_seq + 1, "checkpoint", ref,
                             f"rows {last_seq + 1}..{cp['seq']} were signed but are gone")
    if head != bytes(cp["head_hash"]):
        return chain.Finding("edited", node, cp["seq"], "checkpoint", ref, "the signed head is not the chain's")
    return None
