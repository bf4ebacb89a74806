"""Evidence packages at the edges: exit codes other than tampered, random damage, encodings, v2-only torrents."""

from __future__ import annotations

import json
from pathlib import Path

from tests.ledger.package_forge import PEER, load, rehash_manifest, save, unzip
from tests.ledger.test_package import FINGERPRINT, KEY, genuine, verify
from tracker_watch.domain import chain
from tracker_watch.ledger import package, signing
from tracker_watch.ledger import package_verify as pv
from tracker_watch.ledger.db import Database
from tracker_watch.ledger.evidence import EvidenceWriter


async def test_cannot_check_and_usage_have_their_own_exit_codes(db: Database, tmp_path: Path) -> None:
    folder = await genuine(db, tmp_path)
    assert verify(folder, "SHA256:12")[0] == pv.EXIT_USAGE
    assert verify(tmp_path / "nowhere")[0] == pv.EXIT_USAGE
    (folder / "chain.json").unlink()
    code, out = verify(folder)
    assert code == pv.EXIT_CANNOT_CHECK
    assert "lacks chain.json" in out
    (folder / "chain.json").write_text("{not json")
    assert verify(folder)[0] == pv.EXIT_TAMPERED


def test_fingerprint_and_chain_encoding_agree_with_tracker_watch() -> None:
    public = signing.public_raw(KEY)
    assert pv.fingerprint(public) == chain.key_fingerprint(public) == FINGERPRINT
    assert pv.parse_fingerprint(FINGERPRINT) == pv.parse_fingerprint(FINGERPRINT.lower().replace(":", " ")[7:])
    assert FINGERPRINT.replace(":", "")[6:22] == signing.key_id(public)
    from datetime import UTC, datetime

    at = datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=UTC)
    cp = {"node": "n1", "seq": 7, "head_hash": "ab" * 32, "signed_at": chain.plain(at)}
    assert pv.checkpoint_message(cp) == chain.checkpoint_message("n1", 7, bytes.fromhex("ab" * 32), at)
    fields = {"ip": "2001:db8::1", "observed_at": at, "piece_sha1": b"\x01" * 20}
    plain = json.loads(json.dumps({k: chain.plain(v) for k, v in fields.items()}))
    assert pv.canonical("observation", plain) == chain.canonical("observation", fields)
    assert pv.link_hash("n1", 3, bytes(32), b"\x02" * 32) == chain.link_hash("n1", 3, bytes(32), b"\x02" * 32)


async def test_random_damage_is_caught_and_never_crashes_the_verifier(db: Database, tmp_path: Path) -> None:
    import random

    folder = await genuine(db, tmp_path)
    files = {p.name: p.read_bytes() for p in folder.iterdir()}
    rng = random.Random(17)
    for _ in range(300):
        name = rng.choice(sorted(set(files) - {"verify.py"}))
        data = bytearray(files[name])
        data[rng.randrange(len(data))] = rng.randrange(256)
        damaged = {**files, name: bytes(data)}
        if name != "manifest.json":  # the forger re-hashes the unsigned manifest
            manifest = json.loads(files["manifest.json"])
            manifest["files"][name] = __import__("hashlib").sha256(damaged[name]).hexdigest()
            damaged["manifest.json"] = json.dumps(manifest).encode()
        report = pv.check(damaged, {FINGERPRINT.removeprefix("SHA256:").replace(":", "")})
        if not report.tampered:  # only a change that means nothing (JSON whitespace, an unused manifest key)
            assert report.unchecked == []
            if name.endswith(".json"):
                assert _same_json(damaged[name], files[name]) or name == "manifest.json"
            else:
                assert damaged[name] == files[name]


def _same_json(a: bytes, b: bytes) -> bool:
    try:
        return bool(json.loads(a) == json.loads(b))
    except ValueError:
        return False


async def test_a_value_equal_in_python_but_not_to_a_reader_fails(db: Database, tmp_path: Path) -> None:
    folder = await genuine(db, tmp_path)
    incidents = load(folder, "incidents.json")
    incidents[0]["corrupt"] = 0  # False == 0 in Python
    save(folder, "incidents.json", incidents)
    (folder / "notes.txt").write_text("the peer confessed")
    rehash_manifest(folder)
    code, out = verify(folder)
    assert code == pv.EXIT_TAMPERED
    assert "incidents.json: differs" in out
    assert "notes.txt is not part of the package format: nothing in it was checked" in out


async def test_a_v2_only_torrent_cannot_be_checked_in_full(db: Database, tmp_path: Path) -> None:
    import dataclasses
    import hashlib

    from tests.ledger.test_observations import _obs
    from tracker_watch.domain import bencode
    from tracker_watch.domain.evidence import Grade
    from tracker_watch.domain.targets import parse_target
    from tracker_watch.ledger.targets import TargetStore

    info = bencode.encode({b"name": b"x", b"piece length": 16384, b"meta version": 2,
                           b"file tree": {b"x": {b"": {b"length": 16384, b"pieces root": b"\x01" * 32}}}})
    row, _ = await TargetStore(db.pool).register(parse_target(bencode.encode({b"info": bencode.decode(info)})),
                                                 "Studio", "Film", actor="test")
    writer = EvidenceWriter(db.pool, "n1", KEY, checkpoint_every=10**9, checkpoint_interval_s=10**9)
    await writer.write([dataclasses.replace(
        _obs(row.id), infohash_v1=None, infohash_v2=hashlib.sha256(info).digest(), grade=Grade.VERIFIED,
        piece_index=0, piece_bytes=16384, piece_sha256=b"\x01" * 32)])
    await writer.checkpoint()
    async with db.pool.acquire() as conn:
        folder = unzip(await package.build(conn, package.Selection(row.id, PEER)), tmp_path / "v2")
    code, out = verify(folder, FINGERPRINT)
    assert code == pv.EXIT_CANNOT_CHECK, out
    assert "piece 0: a v2-only torrent's piece hashes are not in its info dictionary" in out
