"""Evidence packages of chain format 2, and of chains that mix formats 1 and 2: the standalone verifier
checks both, agrees with tracker-watch's encoding, and takes each value only in the one form we write."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

from tests.helpers import run_process
from tests.ledger.package_forge import PEER, load, rederive, register, relink_and_sign, save, unzip, write_evidence
from tests.ledger.test_package import FINGERPRINT, KEY, genuine, verify
from tracker_watch.domain import chain, chain_v2
from tracker_watch.ledger import package
from tracker_watch.ledger import package_verify as pv
from tracker_watch.ledger.db import Database
from tracker_watch.ledger.evidence import EvidenceWriter


async def mixed(db: Database, tmp_path: Path) -> Path:
    """A package whose chain segment holds format 1 rows (before the upgrade) and format 2 rows (after)."""
    target, info = await register(db)
    for fmt in (1, 2):
        writer = EvidenceWriter(db.pool, "n1", KEY, checkpoint_every=10**9, checkpoint_interval_s=10**9,
                                chain_format=fmt)
        await write_evidence(db, writer, target, info, batches=2)
    await writer.checkpoint()
    async with db.pool.acquire() as conn:
        return unzip(await package.build(conn, package.Selection(target, PEER)), tmp_path / "mixed")


async def test_a_package_of_v1_and_v2_rows_verifies_standalone(db: Database, tmp_path: Path) -> None:
    folder = await mixed(db, tmp_path)
    rows = load(folder, "chain.json")["nodes"]["n1"]["rows"]
    assert {r["format"] for r in rows} == {1, 2}
    code, out = await run_process(sys.executable, "-I", "-S", str(folder / "verify.py"), "--key", FINGERPRINT,
                                  str(folder))
    assert code == pv.EXIT_OK, out
    assert len(load(folder, "observations.json")) == 4


async def test_a_package_of_v2_rows_verifies(db: Database, tmp_path: Path) -> None:
    folder = await genuine(db, tmp_path)
    assert {r["format"] for r in load(folder, "chain.json")["nodes"]["n1"]["rows"]} == {2}
    assert verify(folder, FINGERPRINT)[0] == pv.EXIT_OK


async def test_the_encodings_agree(db: Database, tmp_path: Path) -> None:
    """verify.py's own v2 encoder (from the JSON a package shows) equals tracker-watch's (from the database)."""
    folder = await genuine(db, tmp_path)
    shown = [r for r in load(folder, "chain.json")["nodes"]["n1"]["rows"] if r["fields"] and r["format"] == 2]
    assert {r["kind"] for r in shown} == {"observation", "incident_change"}
    for row in shown:
        assert hashlib.sha256(pv.content_bytes(row["kind"], row["fields"], 2)).hexdigest() == row["content_hash"]
    async with db.pool.acquire() as conn:
        stored = await conn.fetchrow("SELECT * FROM observations WHERE chain_format = 2 ORDER BY chain_seq LIMIT 1")
    assert stored is not None
    plain = json.loads(json.dumps({f: chain.plain(stored[f]) for f in chain_v2.NAMES["observation"]}))
    assert pv.encode_v2("observation", plain) == chain_v2.encode("observation", stored)
    assert pv.link_hash("n1", 3, bytes(32), b"\x02" * 32, 2) == chain.link_hash("n1", 3, bytes(32), b"\x02" * 32, 2)


@pytest.mark.parametrize(("field", "respelled"), [
    ("observed_at", lambda v: v[:23] + "Z" if v.endswith("000Z") else v.replace("Z", "+00:00")),
    ("piece_sha1", str.upper),
    ("ip", lambda v: v.replace("127.0.0.", "127.0.0.0") if v.count(".") == 3 else v.upper()),
    ("id", str.upper),
    ("port", float),
    ("target_id", lambda v: True if v == 1 else str(v)),
])
async def test_a_value_respelled_is_an_alteration_even_when_resigned(db: Database, tmp_path: Path, field: str,
                                                                     respelled: object) -> None:
    """The same instant, bytes or address written another way must not pass: a reader sees a different
    text than the one that was signed. Even a forger holding the key who re-links and re-signs cannot make
    verify.py accept a value in any but the canonical form (it is refused, not merely re-hashed)."""
    folder = await genuine(db, tmp_path)
    segment = load(folder, "chain.json")
    row = next(r for r in segment["nodes"]["n1"]["rows"]
               if r["fields"] and r["format"] == 2 and r["kind"] == "observation")
    assert callable(respelled)
    row["fields"][field] = respelled(row["fields"][field])
    with pytest.raises(ValueError, match="as tracker-watch writes it"):  # the forger's re-hash is refused
        relink_and_sign(segment, KEY)
    save(folder, "chain.json", segment)
    rederive(folder)
    code, out = verify(folder, FINGERPRINT)
    assert code == pv.EXIT_TAMPERED, out
