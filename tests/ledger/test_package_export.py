"""`tracker-watch evidence export`: seals on demand, refuses a segment that does not verify, says how long."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from tests.helpers import run_process
from tests.ledger.package_forge import PEER, register, unzip, write_evidence
from tests.ledger.test_chain_db import tamper, tw
from tracker_watch.ledger import package_verify as pv
from tracker_watch.ledger import signing
from tracker_watch.ledger.db import Database
from tracker_watch.ledger.evidence import EvidenceWriter


async def test_export_seals_on_demand_and_refuses_tampered_evidence(db: Database, pg_dsn: str, schema: str,
                                                                    tmp_path: Path) -> None:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("TRACKER_WATCH_")},
           "TRACKER_WATCH_DATABASE_DSN": pg_dsn, "TRACKER_WATCH_DATABASE_SCHEMA": schema,
           "TRACKER_WATCH_NODE_STATE_DIR": str(tmp_path), "TRACKER_WATCH_NODE_NAME": "n1"}
    code, out = await tw(env, "ledger", "pubkey")
    assert code == 0, out
    match = re.search(r"# fingerprint (SHA256:[0-9a-f:]+)", out)
    assert match is not None, out
    published = match.group(1)
    key = signing.load_existing(tmp_path)
    assert key is not None
    target, info = await register(db)
    writer = EvidenceWriter(db.pool, "n1", key, checkpoint_every=10**9, checkpoint_interval_s=10**9)
    await write_evidence(db, writer, target, info)
    out_zip = tmp_path / "e.zip"
    export = ("evidence", "export", "--ip", PEER, "--target", str(target), "--out", str(out_zip))
    # nothing sealed yet: say for how long, and what to do instead of waiting
    code, out = await tw(env, *export)
    assert code == 1
    assert "not sealed by a signed checkpoint yet" in out
    assert "(here 60 s)" in out
    assert "--seal" in out
    code, out = await tw(env, *export, "--seal")
    assert code == 0, out
    folder = unzip(out_zip.read_bytes(), tmp_path / "pkg")
    code, out = await run_process(sys.executable, "-I", "-S", str(folder / "verify.py"), "--key", published,
                                  str(folder))
    assert code == pv.EXIT_OK, out
    # a forged row the package would carry: no package, one line, exit 2
    await tamper(db, "UPDATE observations SET port = 2 WHERE chain_seq = 1")
    out_zip.unlink()
    code, out = await tw(env, *export)
    assert code == 2
    assert "refusing to package" in out
    assert len(out.strip().splitlines()) == 1
    assert not out_zip.exists()
    # a forged row past the last checkpoint is never signed
    await write_evidence(db, writer, target, info, batches=1)
    last = await db.pool.fetchval("SELECT max(chain_seq) FROM observations")
    await tamper(db, f"UPDATE observations SET port = 1 WHERE chain_seq = {last}")
    code, out = await tw(env, *export, "--seal")
    assert code == 2
    assert "--seal refused" in out
    assert f"position {last}" in out
    assert len(out.strip().splitlines()) == 1


async def test_seal_refuses_another_key_than_the_nodes(db: Database) -> None:
    import pytest
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from tracker_watch.ledger.seal import SealRefused, seal

    target, info = await register(db)
    writer = EvidenceWriter(db.pool, "n1", Ed25519PrivateKey.generate(), checkpoint_every=10**9,
                            checkpoint_interval_s=10**9)
    await write_evidence(db, writer, target, info, batches=1)
    async with db.pool.acquire() as conn:
        first = await seal(conn, "n1", writer.key)
        assert first is not None
        assert await seal(conn, "n1", writer.key) == first  # nothing new: nothing signed
        await write_evidence(db, writer, target, info, batches=1)
        with pytest.raises(SealRefused, match="signed with key"):
            await seal(conn, "n1", Ed25519PrivateKey.generate())
        assert await seal(conn, "n1", writer.key) == await conn.fetchval("SELECT seq FROM chain_heads")
