"""Evidence packages against a forger: every tamper must end in exit 1, a genuine package in exit 0."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.conftest import SettingsFactory
from tests.helpers import run_process
from tests.ledger.package_forge import (
    PEER,
    load,
    rederive,
    register,
    rehash_manifest,
    relink_and_sign,
    save,
    unzip,
    write_evidence,
)
from tracker_watch.ledger import package, signing
from tracker_watch.ledger import package_verify as pv
from tracker_watch.ledger.db import Database
from tracker_watch.ledger.evidence import EvidenceWriter

KEY = Ed25519PrivateKey.generate()
FINGERPRINT = signing.fingerprint(signing.public_raw(KEY))


async def genuine(db: Database, tmp_path: Path, name: str = "pkg", node: str = "n1", key: Ed25519PrivateKey = KEY,
                  ip: str = PEER) -> Path:
    target, info = await register(db)
    writer = EvidenceWriter(db.pool, node, key, checkpoint_every=10**9, checkpoint_interval_s=10**9)
    await write_evidence(db, writer, target, info, ip=ip)
    await writer.checkpoint()
    async with db.pool.acquire() as conn:
        return unzip(await package.build(conn, package.Selection(target, ip)), tmp_path / name)


def verify(folder: Path, *keys: str) -> tuple[int, str]:
    """verify.py's main, in process (the standalone run is tested once, below)."""
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = pv.main([*(a for k in keys for a in ("--key", k)), str(folder)])
    return code, out.getvalue()


async def test_genuine_package_verifies_standalone_and_names_its_key(db: Database, tmp_path: Path) -> None:
    folder = await genuine(db, tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == ["chain.json", "incidents.json", "info.bencoded",
                                                        "manifest.json", "observations.json", "verified_pieces.json",
                                                        "verify.py"]
    # -S: no site-packages at all, so neither tracker_watch nor cryptography can help it
    code, out = await run_process(sys.executable, "-I", "-S", str(folder / "verify.py"), str(folder))
    assert code == pv.EXIT_OK, out
    assert "OK (self-consistency only)" in out
    assert FINGERPRINT in out
    code, out = await run_process(sys.executable, "-I", "-S", str(folder / "verify.py"), "--key", FINGERPRINT)
    assert code == pv.EXIT_OK, out  # the default package is the folder verify.py is in
    assert "signed by the key(s) you pinned" in out
    assert len(load(folder, "observations.json")) == 3
    assert {o["ip"] for o in load(folder, "observations.json")} == {PEER}
    assert [p["sha1"] == p["expected_sha1"] for p in load(folder, "verified_pieces.json")] == [True] * 3
    assert any(r["fields"] is None for r in load(folder, "chain.json")["nodes"]["n1"]["rows"])  # other peers
    # the zip itself can be checked too; a fingerprint pasted without its prefix and colons still pins
    zipped = tmp_path / "pkg.zip"
    async with db.pool.acquire() as conn:
        zipped.write_bytes(await package.build(conn, package.Selection(1, PEER)))
    assert verify(zipped, FINGERPRINT.removeprefix("SHA256:").replace(":", "").upper())[0] == pv.EXIT_OK


def _edit_observation_ip(folder: Path) -> None:
    obs = load(folder, "observations.json")
    obs[0]["ip"] = "127.0.0.99"
    save(folder, "observations.json", obs)


def _edit_first_seen(folder: Path) -> None:
    incidents = load(folder, "incidents.json")
    incidents[0]["first_seen"] = "2020-01-01T00:00:00.000000Z"
    save(folder, "incidents.json", incidents)


def _edit_both_piece_hashes(folder: Path) -> None:
    pieces = load(folder, "verified_pieces.json")
    pieces[0]["sha1"] = pieces[0]["expected_sha1"] = "00" * 20
    save(folder, "verified_pieces.json", pieces)


def _another_torrent(folder: Path) -> None:
    from tests.ledger.package_forge import make_torrent

    (folder / "info.bencoded").write_bytes(make_torrent(b"other")[1])


def _chain_rows(edit: Callable[[list[dict[str, object]]], object]) -> Callable[[Path], None]:
    def apply(folder: Path) -> None:
        segment = load(folder, "chain.json")
        edit(segment["nodes"]["n1"]["rows"])
        save(folder, "chain.json", segment)
    return apply


def _data_rows(name: str, edit: Callable[[list[object]], object]) -> Callable[[Path], None]:
    def apply(folder: Path) -> None:
        rows = load(folder, name)
        edit(rows)
        save(folder, name, rows)
    return apply


def _swap(rows: list[dict[str, object]]) -> None:
    rows[1], rows[2] = rows[2], rows[1]


def _resign_keep_key_id(folder: Path) -> None:
    segment = load(folder, "chain.json")
    genuine_id = segment["nodes"]["n1"]["checkpoint"]["key_id"]
    segment["nodes"]["n1"]["rows"][0]["fields"]["port"] = 1
    relink_and_sign(segment, Ed25519PrivateKey.generate(), key_id=genuine_id)
    save(folder, "chain.json", segment)


@pytest.mark.parametrize(("tamper", "rederived", "message"), [
    (_edit_observation_ip, False, "observations.json: differs from what the signed chain rows say"),
    (_edit_first_seen, False, "incidents.json: differs"),
    (_edit_both_piece_hashes, False, "verified_pieces.json: differs"),
    (_another_torrent, True, "info.bencoded does not hash to the signed infohash"),
    (_resign_keep_key_id, True, "the checkpoint names key"),
    (_chain_rows(_swap), True, "does not link to the previous position"),
    (_chain_rows(lambda rows: rows.pop(1)), True, "does not link to the previous position"),
    (_chain_rows(lambda rows: rows.insert(1, rows[1])), True, "positions are missing, repeated or out of order"),
    (_chain_rows(lambda rows: rows.pop()), True, "does not end at its signed checkpoint"),
    (_data_rows("observations.json", lambda rows: rows.reverse()), False, "observations.json: differs"),
    (_data_rows("observations.json", lambda rows: rows.pop()), False, "observations.json: differs"),
    (_data_rows("observations.json", lambda rows: rows.append(rows[0])), False, "observations.json: differs"),
    (_data_rows("incidents.json", lambda rows: rows.clear()), False, "incidents.json: differs"),
], ids=["observation-ip", "incident-first-seen", "piece-hashes", "other-torrent", "resigned-genuine-key-id",
        "chain-reordered", "chain-row-dropped", "chain-row-duplicated", "chain-tail-cut", "observations-reordered",
        "observation-dropped", "observation-duplicated", "incidents-dropped"])
async def test_forgeries_fail(db: Database, tmp_path: Path, tamper: Callable[[Path], None], rederived: bool,
                              message: str) -> None:
    folder = await genuine(db, tmp_path)
    tamper(folder)
    if rederived:
        rederive(folder)  # the forger keeps the data files in line with the forged chain
    else:
        rehash_manifest(folder)  # the manifest is not signed: a forger re-hashes it
    code, out = verify(folder)
    assert code == pv.EXIT_TAMPERED, out
    assert message in out
    assert "TAMPERED" in out


async def test_a_whole_forged_chain_passes_only_until_the_key_is_pinned(db: Database, tmp_path: Path) -> None:
    # a package from another deployment (or a forger's own key) is self-consistent: only pinning tells
    folder = await genuine(db, tmp_path)
    segment = load(folder, "chain.json")
    for row in segment["nodes"]["n1"]["rows"]:
        if row["fields"] is not None and row["kind"] == "observation":
            row["fields"]["port"] = 4444
    forger = Ed25519PrivateKey.generate()
    relink_and_sign(segment, forger)
    save(folder, "chain.json", segment)
    rederive(folder)
    code, out = verify(folder)
    assert code == pv.EXIT_OK, out
    assert "self-consistency only" in out
    assert FINGERPRINT not in out
    assert signing.fingerprint(signing.public_raw(forger)) in out
    code, out = verify(folder, FINGERPRINT)
    assert code == pv.EXIT_TAMPERED
    assert "which is not a key you pinned" in out


async def test_spliced_chain_of_another_node(db: Database, tmp_path: Path) -> None:
    mine = await genuine(db, tmp_path, "mine")
    # node n2 of another deployment, with its own key: same target and peer, then another peer
    other_key = Ed25519PrivateKey.generate()
    same_peer = await genuine(db, tmp_path, "same", node="n2", key=other_key)
    other_peer = await genuine(db, tmp_path, "other", node="n3", key=other_key, ip="127.0.0.12")
    for source, node, pinned_only in ((same_peer, "n2", True), (other_peer, "n3", False)):
        folder = tmp_path / f"spliced-{node}"
        folder.mkdir()
        for f in mine.iterdir():
            (folder / f.name).write_bytes(f.read_bytes())
        segment = load(folder, "chain.json")
        segment["nodes"][node] = load(source, "chain.json")["nodes"][node]
        save(folder, "chain.json", segment)
        rederive(folder)
        code, out = verify(folder)
        assert code == (pv.EXIT_OK if pinned_only else pv.EXIT_TAMPERED), out
        if not pinned_only:
            assert "several peers or targets" in out
        code, out = verify(folder, FINGERPRINT)
        assert code == pv.EXIT_TAMPERED, out
        assert f"node {node}: signed by key" in out
    # rows of n2 moved into n1's chain do not link there, whatever the forger re-derives
    folder = await genuine(db, tmp_path, "moved")
    segment = load(folder, "chain.json")
    segment["nodes"]["n1"]["rows"][1] = load(same_peer, "chain.json")["nodes"]["n2"]["rows"][1]
    save(folder, "chain.json", segment)
    rederive(folder)
    code, out = verify(folder)
    assert code == pv.EXIT_TAMPERED, out


async def test_a_package_from_another_deployment(db: Database, make_settings: SettingsFactory, schema: str,
                                                 pg_dsn: str, tmp_path: Path) -> None:
    mine = await genuine(db, tmp_path, "mine")
    other = Database(make_settings(database={"schema": f"{schema}_b"}))
    await other.start()
    try:  # same node name, same target id, same peer: only the key tells them apart
        theirs = await genuine(other, tmp_path, "theirs", key=Ed25519PrivateKey.generate())
    finally:
        await other.stop()
        conn = await asyncpg.connect(pg_dsn)
        await conn.execute(f'DROP SCHEMA "{schema}_b" CASCADE')
        await conn.close()
    assert verify(theirs)[0] == pv.EXIT_OK  # genuine in its own deployment
    code, out = verify(theirs, FINGERPRINT)
    assert code == pv.EXIT_TAMPERED
    assert "node n1: signed by key" in out
    # their chain in our package, data files re-derived: caught the same way
    (mine / "chain.json").write_bytes((theirs / "chain.json").read_bytes())
    (mine / "info.bencoded").write_bytes((theirs / "info.bencoded").read_bytes())
    rederive(mine)
    assert verify(mine, FINGERPRINT)[0] == pv.EXIT_TAMPERED
