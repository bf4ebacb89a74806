"""Tenants never see each other: another rights holder's objects are 404, an ISP sees only its notices."""

from __future__ import annotations

import dataclasses
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.api.conftest import Api
from tests.ledger.test_observations import _obs
from tracker_watch.config import settings_from_mapping
from tracker_watch.domain.evidence import Grade
from tracker_watch.domain.leases import parse
from tracker_watch.ledger.evidence import EvidenceWriter
from tracker_watch.ledger.leases import import_leases
from tracker_watch.ledger.strikes import StrikeLedger


async def studio_a_case(api: Api) -> dict[str, Any]:
    """Studio A's target with verified evidence from a Kaz Telecom subscriber, a strike and its notice."""
    _, target, _ = await api.call("a", "POST", "/api/v1/targets", json={"work": "Film A", "infohash": "aa" * 20})
    async with api.db.pool.acquire() as conn:
        await import_leases(conn, "Kaz Telecom", parse("prefix,port_from,port_to,valid_from,valid_to,subscriber\n"
                                                        "10.0.0.0/24,,,2020-01-01,,SUB-1\n"))
    obs = dataclasses.replace(_obs(target["id"], ip="10.0.0.5"), grade=Grade.VERIFIED, piece_index=0, piece_bytes=1)
    await EvidenceWriter(api.db.pool, "n1", Ed25519PrivateKey.generate()).write([obs])
    settings = settings_from_mapping({"policy": {"test_country": "KZ"}, "database": {"schema": api.db.schema}})
    await StrikeLedger(api.db.pool, settings).tick()
    strike = await api.db.pool.fetchval("SELECT id FROM strikes")
    notice = await api.db.pool.fetchval("SELECT id FROM notices")
    return {"target": target["id"], "work": target["work_id"], "strike": strike, "notice": notice}


async def test_rights_holder_b_cannot_touch_a(api: Api) -> None:
    case = await studio_a_case(api)
    t, w, strike, notice = case["target"], case["work"], case["strike"], case["notice"]
    for method, path, kw in [
        ("GET", f"/api/v1/targets/{t}", {}), ("POST", f"/api/v1/targets/{t}/pause", {}),
        ("POST", f"/api/v1/targets/{t}/resume", {}), ("DELETE", f"/api/v1/targets/{t}", {}),
        ("GET", f"/api/v1/works/{w}", {}), ("GET", f"/api/v1/observations?target={t}", {}),
        ("GET", f"/api/v1/incidents?target={t}", {}), ("GET", f"/api/v1/evidence?target={t}&ip=10.0.0.5", {}),
        ("GET", f"/api/v1/strikes/{strike}", {}), ("GET", f"/api/v1/notices/{notice}", {}),
        ("GET", f"/api/v1/notices/{notice}?format=xml", {}),
        ("POST", "/api/v1/targets", {"json": {"work_id": w, "infohash": "bb" * 20}}),
    ]:
        status, body, _ = await api.call("b", method, path, **kw)
        assert status == 404, (method, path, status, body)
        assert body["status"] == 404
    for path in ("/api/v1/targets", "/api/v1/works", "/api/v1/observations", "/api/v1/incidents",
                 "/api/v1/strikes", "/api/v1/notices"):
        status, body, _ = await api.call("b", "GET", path)
        assert (status, body["items"]) == (200, []), path
    # and A sees all of it
    for path in (f"/api/v1/targets/{t}", f"/api/v1/strikes/{strike}", f"/api/v1/notices/{notice}",
                 f"/api/v1/observations?target={t}", f"/api/v1/evidence?target={t}&ip=10.0.0.5"):
        status, _, _ = await api.call("a", "GET", path)
        assert status in (200, 404 if "evidence" in path else 200), path
    assert (await api.db.pool.fetchval("SELECT status FROM targets WHERE id = $1", t)) == "active"


async def test_isp_sees_only_its_notices(api: Api) -> None:
    case = await studio_a_case(api)
    status, body, _ = await api.call("isp", "GET", "/api/v1/notices")
    assert [n["id"] for n in body["items"]] == [case["notice"]]
    status, xml, resp = await api.call("isp", "GET", f"/api/v1/notices/{case['notice']}?format=xml")
    assert (status, resp.content_type) == (200, "application/xml")
    assert b"<IP_Address>10.0.0.5</IP_Address>" in xml
    status, body, _ = await api.call("isp2", "GET", f"/api/v1/notices/{case['notice']}")
    assert status == 404
    status, body, _ = await api.call("isp2", "GET", "/api/v1/notices")
    assert body["items"] == []
    for path in ("/api/v1/targets", f"/api/v1/strikes/{case['strike']}", "/api/v1/observations", "/api/v1/works"):
        status, body, _ = await api.call("isp", "GET", path)
        assert status == 403, path
        assert "isp token may not" in body["detail"]


async def test_operator_sees_all_and_voids(api: Api) -> None:
    case = await studio_a_case(api)
    status, body, _ = await api.call("op", "GET", "/api/v1/strikes")
    assert [s["id"] for s in body["items"]] == [case["strike"]]
    assert body["items"][0]["subject"]["subscriber_ref"] == "SUB-1"
    status, body, _ = await api.call("a", "POST", f"/api/v1/strikes/{case['strike']}/void", json={"reason": "x"})
    assert status == 403
    status, body, _ = await api.call("op", "POST", f"/api/v1/strikes/{case['strike']}/void",
                                     json={"reason": "router compromised"})
    assert (status, body["voided"], body["withdrawals"]) == (200, case["strike"], 0)
    _, strike, _ = await api.call("op", "GET", f"/api/v1/strikes/{case['strike']}")
    assert (strike["status"], strike["reason"]) == ("voided", "router compromised")
    by = await api.db.pool.fetchval("SELECT changed_by FROM strikes WHERE id = $1", case["strike"])
    assert by.endswith(":ops")  # the token's name: who voided it


async def test_revocation_takes_effect_at_once(api: Api) -> None:
    status, created, _ = await api.call("op", "POST", "/api/v1/tokens", json={"role": "rightsholder", "name": "C"})
    assert status == 201
    api.tokens["c"] = created["token"]
    assert (await api.call("c", "GET", "/api/v1/targets"))[0] == 200
    assert (await api.call("op", "DELETE", f"/api/v1/tokens/{created['id']}"))[0] == 204
    status, body, resp = await api.call("c", "GET", "/api/v1/targets")
    assert status == 401
    assert "revoked" in body["detail"]
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    stored = await api.db.pool.fetchval("SELECT token_hash FROM api_tokens WHERE id = $1", created["id"])
    assert created["token"].encode() not in bytes(stored)  # only the hash is stored
