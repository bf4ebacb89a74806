"""A forger's toolkit for evidence packages: what an attacker holding a genuine package can do to it.

Each helper leaves the package internally tidy (manifest re-hashed, data files re-derived where the
attack calls for it), so that a verifier catches the forgery by what it checks, not by a stale hash.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.ledger.test_observations import _obs
from tracker_watch.domain import bencode
from tracker_watch.domain.evidence import Grade
from tracker_watch.domain.targets import parse_target
from tracker_watch.ledger import package_verify as pv
from tracker_watch.ledger import signing
from tracker_watch.ledger.db import Database
from tracker_watch.ledger.evidence import EvidenceWriter
from tracker_watch.ledger.targets import TargetStore

PIECE = 16384
PEER = "127.0.0.11"


def make_torrent(seed: bytes, pieces: int = 4) -> tuple[bytes, bytes]:
    """(.torrent bytes, raw info) of a small v1 torrent whose content is derived from `seed`."""
    data = hashlib.shake_256(seed).digest(PIECE * pieces)
    hashes = b"".join(hashlib.sha1(data[i:i + PIECE]).digest() for i in range(0, len(data), PIECE))
    info = {b"name": b"film-" + seed, b"piece length": PIECE, b"length": len(data), b"pieces": hashes}
    return bencode.encode({b"info": info}), bencode.encode(info)


async def register(db: Database, seed: bytes = b"a") -> tuple[int, bytes]:
    torrent, info = make_torrent(seed)
    row, _ = await TargetStore(db.pool).register(parse_target(torrent), "Studio", "Film", actor="test")
    return row.id, info


async def write_evidence(db: Database, writer: EvidenceWriter, target: int, info: bytes, batches: int = 3,
                         ip: str = PEER) -> None:
    """Per batch: one verified piece from `ip`, and advertisements of three other peers (hash-only rows)."""
    decoded = bencode.decode(info)
    assert isinstance(decoded, dict)
    hashes: bytes = decoded[b"pieces"]
    for b in range(batches):
        verified = dataclasses.replace(
            _obs(target, ip=ip, port=6881 + b), node=writer.node, infohash_v1=hashlib.sha1(info).digest(),
            grade=Grade.VERIFIED, piece_index=b, piece_bytes=PIECE, piece_sha1=hashes[b * 20:b * 20 + 20],
            piece_sha256=bytes(32))
        others = [dataclasses.replace(_obs(target, ip=f"127.0.0.{21 + i}", port=7000 + b), node=writer.node,
                                      infohash_v1=hashlib.sha1(info).digest()) for i in range(3)]
        await writer.write([verified, *others])


def unzip(data: bytes, folder: Path) -> Path:
    zipfile.ZipFile(io.BytesIO(data)).extractall(folder)
    return folder


def load(folder: Path, name: str) -> Any:
    return json.loads((folder / name).read_text())


def save(folder: Path, name: str, value: Any) -> None:
    (folder / name).write_text(json.dumps(value, indent=2, sort_keys=True))


def rehash_manifest(folder: Path) -> None:
    manifest = load(folder, "manifest.json")
    manifest["files"] = {n: hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in manifest["files"]}
    save(folder, "manifest.json", manifest)


def rederive(folder: Path) -> None:
    """Make the data files say what chain.json says (the forger's best effort), and re-hash."""
    derived = pv.derive(load(folder, "chain.json"), (folder / "info.bencoded").read_bytes())
    for name in pv.DERIVED:
        save(folder, name, derived[name])
    rehash_manifest(folder)


def relink_and_sign(segment: dict[str, Any], key: Ed25519PrivateKey, key_id: str | None = None) -> None:
    """Recompute every content hash and link, and sign the new heads with `key` (claiming `key_id`)."""
    public = signing.public_raw(key)
    for node, part in segment["nodes"].items():
        prev = bytes.fromhex(part["prev_hash_before_first"])
        for row in part["rows"]:
            fmt = row.get("format", 1)
            if row["fields"] is not None:
                row["content_hash"] = hashlib.sha256(pv.content_bytes(row["kind"], row["fields"], fmt)).hexdigest()
            row["prev_hash"] = prev.hex()
            prev = pv.link_hash(node, row["seq"], prev, bytes.fromhex(row["content_hash"]), fmt)
            row["row_hash"] = prev.hex()
        cp = part["checkpoint"]
        cp.update(head_hash=prev.hex(), seq=part["rows"][-1]["seq"], key_id=key_id or signing.key_id(public))
        cp["signature"] = key.sign(pv.checkpoint_message(cp)).hex()
        part["public_key"] = public.hex()
