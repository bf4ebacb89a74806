"""The signing keys' fingerprints are published over the API, and a tampered ledger yields no package."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.api.conftest import Api
from tests.ledger.package_forge import PEER, register, write_evidence
from tests.ledger.test_chain_db import tamper
from tracker_watch.ledger import signing
from tracker_watch.ledger.evidence import EvidenceWriter


async def test_fingerprints_are_published_and_tampered_evidence_is_refused(api: Api) -> None:
    key = Ed25519PrivateKey.generate()
    target, info = await register(api.db)
    writer = EvidenceWriter(api.db.pool, "n1", key, checkpoint_every=10**9, checkpoint_interval_s=10**9)
    await write_evidence(api.db, writer, target, info)
    await writer.checkpoint()
    status, body, _ = await api.call("isp", "GET", "/api/v1/signing-keys")  # ISPs pin packages too
    assert status == 200
    public = signing.public_raw(key)
    assert body["items"] == [{"node": "n1", "key_id": signing.key_id(public), "public_key": public.hex(),
                              "fingerprint": signing.fingerprint(public), "created_at": body["items"][0]["created_at"]}]
    status, _, _ = await api.call("op", "GET", f"/api/v1/evidence?target={target}&ip={PEER}")
    assert status == 200
    await tamper(api.db, "UPDATE observations SET port = 2 WHERE chain_seq = 1")
    status, body, _ = await api.call("op", "GET", f"/api/v1/evidence?target={target}&ip={PEER}")
    assert status == 409
    assert "do not verify" in body["detail"]
