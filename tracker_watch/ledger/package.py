"""Evidence packages: everything a third party needs to re-check one peer's evidence, in one zip.

Contents: the incidents and observations of (target, IP) in a time range; the torrent's metadata and
raw info dictionary; the pieces verified from that peer with their hashes; the chain segment from the
first included row to the checkpoint that seals it — rows of other peers appear only as hashes — with
the checkpoint's signature and public key; a manifest of file hashes; and verify.py, which checks it
all with nothing but Python (and `cryptography` for the signature).
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
from tracker_watch.domain.targets import meta_from_info, v1_piece_hashes
from tracker_watch.ledger.db import Conn


class PackageError(Exception):
    """The package cannot be built (nothing matches, metadata unknown, no checkpoint yet)."""


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
        "SELECT * FROM observations WHERE target_id = $1 AND ip = $2::inet AND ($3::timestamptz IS NULL OR "
        "observed_at >= $3) AND ($4::timestamptz IS NULL OR observed_at < $4) ORDER BY node, chain_seq",
        sel.target_id, ip, sel.since, sel.until)
    if not obs:
        raise PackageError(f"no observations of {ip} in target {sel.target_id} in that time range")
    incidents = await conn.fetch(
        "SELECT * FROM incidents WHERE target_id = $1 AND ip = $2::inet AND last_seen >= $3 AND first_seen <= $4 "
        "ORDER BY window_start", sel.target_id, ip, obs[0]["observed_at"], obs[-1]["observed_at"])
    changes = await conn.fetch("SELECT * FROM incident_changes WHERE incident_id = ANY($1::bigint[])",
                               [i["id"] for i in incidents])
    segment = await _segment(conn, obs, changes)
    info = bytes(target["info"])
    files = {
        "manifest.json": b"",  # written last
        "target.json": _json({"target_id": target["id"], "holder": target["holder"], "work": target["work"],
                              "registered_as": target["input_kind"], "ip": ip}),
        "incidents.json": _json([{k: chain.plain(v) for k, v in dict(i).items()} for i in incidents]),
        "observations.json": _json([_plain_row(o, OBSERVATION_FIELDS) for o in obs]),
        "torrent.json": _json(_torrent(target, info)),
        "info.bencoded": info,
        "verified_pieces.json": _json(_pieces(obs, info)),
        "chain.json": _json(segment),
        "verify.py": resources.files("tracker_watch.ledger").joinpath("package_verify.py").read_bytes(),
    }
    manifest = {"software": SOFTWARE, "generated_at": chain.plain(utc_now_ms()),
                "selection": {"target_id": sel.target_id, "ip": ip, "from": chain.plain(sel.since),
                              "to": chain.plain(sel.until)},
                "files": {name: hashlib.sha256(data).hexdigest() for name, data in files.items()
                          if name != "manifest.json"}}
    files["manifest.json"] = _json(manifest)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _json(value: Any) -> bytes:
    return json.dumps(value, indent=2, sort_keys=True).encode()


def _torrent(target: Any, info: bytes) -> dict[str, Any]:
    meta = meta_from_info(info)
    return {"name": meta.name, "total_size": meta.total_size, "piece_length": meta.piece_length,
            "num_pieces": meta.num_pieces, "files": [{"path": p, "size": s} for p, s in meta.files],
            "infohash_v1": target["infohash_v1"].hex() if target["infohash_v1"] else None,
            "infohash_v2": target["infohash_v2"].hex() if target["infohash_v2"] else None}


def _pieces(obs: list[Any], info: bytes) -> list[dict[str, Any]]:
    hashes = v1_piece_hashes(info)
    out = []
    for o in obs:
        if o["grade"] != "verified" or o["piece_index"] is None:
            continue
        i = o["piece_index"]
        out.append({"piece": i, "port": o["port"], "observed_at": chain.plain(o["observed_at"]),
                    "bytes_from_peer": o["piece_bytes"], "sha1": chain.plain(o["piece_sha1"]),
                    "sha256": chain.plain(o["piece_sha256"]),
                    "expected_sha1": hashes[i * 20:i * 20 + 20].hex() if hashes else None})
    return out


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
            raise PackageError(f"no signed checkpoint covers node {node}'s rows yet (up to position {last}); "
                               "the daemon signs one at least every evidence.checkpoint_interval_s")
        rows = await conn.fetch(
            "SELECT 'observation' AS kind, chain_seq, content_hash, prev_hash, row_hash FROM observations "
            "WHERE node = $1 AND chain_seq BETWEEN $2 AND $3 UNION ALL "
            "SELECT 'incident_change', chain_seq, content_hash, prev_hash, row_hash FROM incident_changes "
            "WHERE node = $1 AND chain_seq BETWEEN $2 AND $3 ORDER BY chain_seq", node, first, cp["seq"])
        nodes[node] = {
            "prev_hash_before_first": bytes(rows[0]["prev_hash"]).hex(),
            "rows": [{"seq": r["chain_seq"], "kind": r["kind"], "content_hash": bytes(r["content_hash"]).hex(),
                      "prev_hash": bytes(r["prev_hash"]).hex(), "row_hash": bytes(r["row_hash"]).hex(),
                      "fields": included.get((node, r["chain_seq"]), (None, None))[1]} for r in rows],
            "checkpoint": {"node": node, "seq": cp["seq"], "head_hash": bytes(cp["head_hash"]).hex(),
                           "signed_at": chain.plain(cp["signed_at"]), "key_id": cp["key_id"],
                           "signature": bytes(cp["signature"]).hex()},
            "public_key": bytes(cp["public_key"]).hex(),
        }
    return {"nodes": nodes}
