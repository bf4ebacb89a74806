#!/usr/bin/env python3
"""Check a tracker-watch evidence package without tracker-watch or its database.

    python3 verify.py [PACKAGE_DIR]        (needs Python 3.9+; `cryptography` for the signature check)

It checks that
  1. every file listed in manifest.json has the SHA-256 the manifest gives;
  2. the info dictionary hashes to the torrent's infohash (SHA-1 for v1, SHA-256 for v2);
  3. each verified piece's SHA-1 equals the piece hash in the info dictionary (v1 and hybrid torrents);
  4. each included observation and incident change, encoded canonically, hashes to its content hash;
  5. the chain segment links from its first row to a checkpoint, position by position;
  6. the checkpoint's Ed25519 signature verifies with the included public key.
This file is copied verbatim into every package; tracker-watch's own tests run it against packages.
"""

from __future__ import annotations

import hashlib
import json
import struct
import sys
from pathlib import Path
from typing import Any

DOMAIN = b"tracker-watch/chain/v1"


def link_hash(node: str, seq: int, prev_hash: bytes, content: bytes) -> bytes:
    raw = node.encode()
    return hashlib.sha256(DOMAIN + struct.pack(">H", len(raw)) + raw + struct.pack(">Q", seq) + prev_hash
                          + content).digest()


def canonical(kind: str, fields: dict[str, Any]) -> bytes:
    doc = dict(fields)
    doc["kind"] = kind
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def checkpoint_message(cp: dict[str, Any]) -> bytes:
    return (f"tracker-watch checkpoint v1\nnode={cp['node']}\nseq={cp['seq']}\nhead={cp['head_hash']}\n"
            f"signed_at={cp['signed_at']}\n").encode()


def check(folder: Path) -> list[str]:
    problems: list[str] = []
    manifest = json.loads((folder / "manifest.json").read_text())
    for name, digest in manifest["files"].items():
        if hashlib.sha256((folder / name).read_bytes()).hexdigest() != digest:
            problems.append(f"{name}: SHA-256 differs from the manifest")
    torrent = json.loads((folder / "torrent.json").read_text())
    info = (folder / "info.bencoded").read_bytes()
    if torrent.get("infohash_v1") and hashlib.sha1(info).hexdigest() != torrent["infohash_v1"]:
        problems.append("info.bencoded does not hash to infohash_v1")
    if torrent.get("infohash_v2") and hashlib.sha256(info).hexdigest() != torrent["infohash_v2"]:
        problems.append("info.bencoded does not hash to infohash_v2")
    for piece in json.loads((folder / "verified_pieces.json").read_text()):
        expected = piece.get("expected_sha1")
        if expected is not None and piece["sha1"] != expected:
            problems.append(f"piece {piece['piece']}: SHA-1 of the data is not the torrent's piece hash")
    problems += check_chain(json.loads((folder / "chain.json").read_text()))
    return problems


def check_chain(segment: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    for node, part in segment["nodes"].items():
        rows = part["rows"]
        prev = bytes.fromhex(part["prev_hash_before_first"])
        for row in rows:
            where = f"node {node} position {row['seq']}"
            fields = row.get("fields")
            if fields is not None and hashlib.sha256(canonical(row["kind"], fields)).hexdigest() != row["content_hash"]:
                problems.append(f"{where}: fields do not match the content hash")
            if row["prev_hash"] != prev.hex():
                problems.append(f"{where}: does not link to the previous position")
            computed = link_hash(node, row["seq"], prev, bytes.fromhex(row["content_hash"]))
            if computed.hex() != row["row_hash"]:
                problems.append(f"{where}: row hash does not match")
            prev = computed
        if rows and [r["seq"] for r in rows] != list(range(rows[0]["seq"], rows[0]["seq"] + len(rows))):
            problems.append(f"node {node}: positions are not contiguous")
        cp = part["checkpoint"]
        if not rows or cp["seq"] != rows[-1]["seq"] or cp["head_hash"] != prev.hex():
            problems.append(f"node {node}: the segment does not end at the signed checkpoint")
        problems += check_signature(cp, part["public_key"])
    return problems


def check_signature(cp: dict[str, Any], public_key_hex: str) -> list[str]:
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    except ImportError:
        return ["cannot check the checkpoint signature: install the 'cryptography' package"]
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key_hex)).verify(
            bytes.fromhex(cp["signature"]), checkpoint_message(cp))
    except InvalidSignature:
        return [f"checkpoint {cp['node']}/{cp['seq']}: signature does not verify"]
    return []


def main() -> int:
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent)
    problems = check(folder)
    for p in problems:
        print("FAIL:", p)
    if not problems:
        print("OK: files, infohash, piece hashes, chain segment and checkpoint signature all check out")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
