"""Evidence packages: everything a third party needs to re-check one peer's evidence, in one zip.

The chain segment (chain.json) is the package's substance: per node, the rows from the first included
one to the checkpoint that seals it — rows of other peers as hashes only — with the checkpoint's
signature and public key. observations.json, incidents.json and verified_pieces.json are derived from
that segment and info.bencoded by the very code verify.py runs (package_verify.derive), so a checker
re-derives and compares them; manifest.json (file hashes, human labels) is not signed. Before a package
leaves, it is checked with verify.py's own check: a segment that does not verify is never packaged.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any

from tracker_watch import SOFTWARE
from tracker_watch.domain import chain
from tracker_watch.domain.evidence import OBSERVATION_FIELDS, normalize_ip, utc_now_ms
from tracker_watch.domain.incidents import INCIDENT_CHANGE_FIELDS
from tracker_watch.ledger import package_verify as pv
from tracker_watch.ledger.db import Conn


class PackageError(Exception):
    """The package cannot be built (nothing matches, metadata unknown, no checkpoint yet)."""


class NotSealed(PackageError):
    """Rows the package needs are not covered by a signed checkpoint yet."""

    def __init__(self, node: str, seq: int) -> None:
        super().__init__(f"node {node}'s rows up to position {seq} are not sealed by a signed checkpoint yet; "
                         "its daemon signs one every evidence.checkpoint_interval_s while it runs")
        self.node, self.seq = node, seq


class SegmentInvalid(PackageError):
    """The ledger rows the package would carry do not verify: the ledger was tampered with."""


@dataclass(frozen=True)
class Selection:
    target_id: int
    ip: str
    since: datetime | None = None
    until: datetime | None = None


def _plain_row(r: Any, fields: tuple[str, ...]) -> dict[str, Any]:
    return {f: chain.plain(r[f]) for f in fields}


async def build(conn: Conn, sel: Selection) -> bytes:
    target = await conn.fetchrow(
        "SELECT t.*, w.title AS work, h.name AS holder FROM targets t JOIN works w ON w.id = t.work_id "
        "JOIN rights_holders h ON h.id = w.holder_id WHERE t.id = $1", sel.target_id)
    if target is None:
        raise PackageError(f"no target {sel.target_id}")
    if target["info"] is None:
        raise PackageError("the torrent's metadata is not known yet; nothing can be verified without it")
    ip = normalize_ip(sel.ip)
    obs = await conn.fetch(
        "SELECT * FROM observations WHERE target_id = $1 AND ip = $2::inet AND redacted_at IS NULL AND "
        "($3::timestamptz IS NULL OR observed_at >= $3) AND ($4::timestamptz IS NULL OR observed_at < $4) "
        "ORDER BY node, chain_seq", sel.target_id, ip, sel.since, sel.until)
    if not obs:
        raise PackageError(f"no observations of {ip} in target {sel.target_id} in that time range")
    seen = [o["observed_at"] for o in obs]
    incidents = await conn.fetch(
        "SELECT id FROM incidents WHERE target_id = $1 AND ip = $2::inet AND last_seen >= $3 AND first_seen <= $4",
        sel.target_id, ip, min(seen), max(seen))
    changes = await conn.fetch("SELECT * FROM incident_changes WHERE incident_id = ANY($1::bigint[]) "
                               "AND redacted_at IS NULL", [i["id"] for i in incidents])
    segment = await _segment(conn, obs, changes)
    info = bytes(target["info"])
    try:
        derived = pv.derive(segment, info)
    except (ValueError, KeyError, TypeError) as exc:
        raise SegmentInvalid(f"refusing to package: the rows cannot be read as evidence ({exc})") from None
    files = {name: _json(derived[name]) for name in pv.DERIVED}
    files |= {"info.bencoded": info, "chain.json": _json(segment),
              "verify.py": resources.files("tracker_watch.ledger").joinpath("package_verify.py").read_bytes()}
    manifest = {"format": pv.FORMAT, "software": SOFTWARE, "generated_at": chain.plain(utc_now_ms()),
                "selection": {"target_id": sel.target_id, "ip": ip, "from": chain.plain(sel.since),
                              "to": chain.plain(sel.until)},
                "labels": {"holder": target["holder"], "work": target["work"],
                           "registered_as": target["input_kind"]},
                "note": "this manifest is not signed: selection and labels are for reading; the evidence is "
                        "chain.json, and verify.py checks every other file against it",
                "files": {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}}
    files["manifest.json"] = _json(manifest)
    report = pv.check(files)
    if report.tampered:
        more = f" (and {len(report.tampered) - 1} more)" if len(report.tampered) > 1 else ""
        raise SegmentInvalid(f"refusing to package evidence whose ledger rows do not verify: {report.tampered[0]}"
                             f"{more}; run `tracker-watch ledger verify`")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(files):
            zf.writestr(name, files[name])
    return buf.getvalue()


def _json(value: Any) -> bytes:
    return json.dumps(value, indent=2, sort_keys=True).encode()


async def _segment(conn: Conn, obs: list[Any], changes: list[Any]) -> dict[str, Any]:
    """Per node: chain rows from the first included one to the checkpoint at or after the last one."""
    included: dict[tuple[str, int], tuple[str, dict[str, Any]]] = {}
    for o in obs:
        included[(o["node"], o["chain_seq"])] = ("observation", _plain_row(o, OBSERVATION_FIELDS))
    for c in changes:
        included[(c["node"], c["chain_seq"])] = ("incident_change", _plain_row(c, INCIDENT_CHANGE_FIELDS))
    nodes: dict[str, Any] = {}
    for node in sorted({n for n, _ in included}):
        seqs = [s for n, s in included if n == node]
        first, last = min(seqs), max(seqs)
        cp = await conn.fetchrow("SELECT c.*, k.public_key FROM chain_checkpoints c JOIN signing_keys k "
                                 "USING (key_id) WHERE c.node = $1 AND c.seq >= $2 ORDER BY c.seq LIMIT 1", node, last)
        if cp is None:
            raise NotSealed(node, last)
        rows = await conn.fetch(
            "SELECT 'observation' AS kind, chain_seq, content_hash, prev_hash, row_hash, chain_format "
            "FROM observations WHERE node = $1 AND chain_seq BETWEEN $2 AND $3 UNION ALL "
            "SELECT 'incident_change', chain_seq, content_hash, prev_hash, row_hash, chain_format "
            "FROM incident_changes "
            "WHERE node = $1 AND chain_seq BETWEEN $2 AND $3 ORDER BY chain_seq", node, first, cp["seq"])
        if not rows or rows[0]["chain_seq"] != first:
            raise SegmentInvalid(f"refusing to package: node {node}'s chain rows from position {first} are missing; "
                                 "run `tracker-watch ledger verify`")
        nodes[node] = {
            "prev_hash_before_first": bytes(rows[0]["prev_hash"]).hex(),
            "rows": [{"seq": r["chain_seq"], "kind": r["kind"], "format": r["chain_format"],
                      "content_hash": bytes(r["content_hash"]).hex(),
                      "prev_hash": bytes(r["prev_hash"]).hex(), "row_hash": bytes(r["row_hash"]).hex(),
                      "fields": included.get((node, r["chain_seq"]), (None, None))[1]} for r in rows],
            "checkpoint": {"node": node, "seq": cp["seq"], "head_hash": bytes(cp["head_hash"]).hex(),
                           "signed_at": chain.plain(cp["signed_at"]), "key_id": cp["key_id"],
                           "signature": bytes(cp["signature"]).hex()},
            "public_key": bytes(cp["public_key"]).hex(),
        }
    return {"nodes": nodes}
