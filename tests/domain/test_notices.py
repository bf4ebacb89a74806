"""ACNS notices validate against the ACNS 1.2 schema (offline) and escape what they carry."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
import xmlschema

from tracker_watch.domain.notices import NS, NoticeFacts, Party, render_json, render_xml, text

ACNS = Path(__file__).resolve().parents[1] / "data" / "acns"


@cache
def schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(ACNS / "acns-1.2.xsd"), allow="sandbox", locations={
        "http://www.w3.org/2005/05/xmlmime": str(ACNS / "xmlmime.xsd"),
        "http://www.w3.org/2000/09/xmldsig#": str(ACNS / "xmldsig.xsd")})


def validate(xml: bytes) -> None:
    """Every notice the tests produce goes through here."""
    # the instance may not fetch anything either (no external entities, no schemaLocation)
    schema().validate(xmlschema.XMLResource(xml.decode(), allow="none"))


def facts(**overrides: object) -> NoticeFacts:
    base = dict(notice_id="TW-00000001", level=1, issued_at=datetime(2026, 11, 28, tzinfo=UTC),
                complainant=Party(entity="Studio <A> & Sons", email="notices@studio.example", contact="Ops"),
                service_provider=Party(entity="Kaz Telecom", email="abuse@telecom.example"),
                ip="95.56.0.1", port=51413, seen_at=datetime(2026, 11, 28, 10, 0, 0, 123000, tzinfo=UTC),
                title="Film \"X\" <director's cut>", file_name="film&x.mkv", file_size=5 * 2**31,
                infohash_v1="ab" * 20, infohash_v2=None, client="qBittorrent 5.0.1", subscriber_ref="SUB-9",
                also_seen=((datetime(2026, 11, 28, 10, tzinfo=UTC), datetime(2026, 11, 28, 11, tzinfo=UTC)),),
                pieces_verified=2, bytes_verified=131072, software="tracker-watch/0.1.0")
    base.update(overrides)
    return NoticeFacts(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("level", [1, 2, 3])
def test_notices_validate_against_acns_1_2(level: int) -> None:
    validate(render_xml(facts(level=level)))


def test_v2_only_and_minimal_notices_validate() -> None:
    validate(render_xml(facts(infohash_v1=None, infohash_v2="cd" * 32, port=None, client=None, subscriber_ref=None,
                              also_seen=())))


def test_fields_as_isps_parse_them() -> None:
    root = ET.fromstring(render_xml(facts()))
    q = {"a": NS}
    assert root.tag == f"{{{NS}}}Infringement"
    assert root.findtext("a:Source/a:IP_Address", namespaces=q) == "95.56.0.1"
    assert root.findtext("a:Source/a:Port", namespaces=q) == "51413"
    assert root.findtext("a:Source/a:Type", namespaces=q) == "BitTorrent"
    sub_type = root.find("a:Source/a:SubType", q)
    assert sub_type is not None
    assert (sub_type.get("BaseType"), sub_type.get("Protocol")) == ("P2P", "BITTORRENT")
    assert root.findtext("a:Source/a:TimeStamp", namespaces=q) == "2026-11-28T10:00:00.123Z"
    assert root.findtext("a:Content/a:Item/a:FileSize", namespaces=q) == str(5 * 2**31)  # beyond 32 bits
    hash_el = root.find("a:Content/a:Item/a:Hash", q)
    assert hash_el is not None
    assert (hash_el.get("Type"), hash_el.text) == ("SHA1", "AB" * 20)
    # escaped on the way out, intact on the way in
    assert root.findtext("a:Content/a:Item/a:Title", namespaces=q) == "Film \"X\" <director's cut>"
    assert root.findtext("a:Complainant/a:Entity", namespaces=q) == "Studio <A> & Sons"
    assert b"<director" not in render_xml(facts())


def test_json_twin_and_plain_language() -> None:
    doc = json.loads(render_json(facts(level=2)))
    assert doc["level"] == 2
    assert doc["level_name"] == "warning"
    assert doc["ip"] == "95.56.0.1"
    assert doc["file_size"] == 5 * 2**31
    assert "Strike 2 of 3" in doc["text"]
    assert "SUB-9" in text(facts())


def test_text_names_the_evidence_signing_keys() -> None:
    fp = "SHA256:" + ":".join(["ab12"] * 16)
    f = facts(signing_keys=(("n1", fp),))
    assert f"Evidence signing key of node n1: {fp}" in text(f)
    validate(render_xml(f))
    assert json.loads(render_json(f))["signing_keys"] == [["n1", fp]]
