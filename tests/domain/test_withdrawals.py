"""Withdrawals of notices: ACNS retractions of the notice as sent, valid against the ACNS 1.2 schema."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from xml.etree import ElementTree as ET

import pytest

from tests.domain.test_notices import facts, validate
from tracker_watch.domain import withdrawals
from tracker_watch.domain.notices import NS, render_json, render_xml

AT = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
Q = {"a": NS}


@pytest.mark.parametrize("cause", sorted(withdrawals.REASONS))
@pytest.mark.parametrize("level", [1, 2, 3])
def test_a_withdrawal_is_the_notice_retracted(level: int, cause: str) -> None:
    f = facts(level=level)
    original_xml, original = render_xml(f), json.loads(render_json(f))
    xml = withdrawals.render_xml(original_xml, original, withdrawals.REASONS[cause], AT)
    validate(xml)
    root, sent = ET.fromstring(xml), ET.fromstring(original_xml)
    kind = root.find("a:Type", Q)
    assert kind is not None
    assert (kind.text, kind.get("Retraction")) == ("INFRINGEMENT", "true")
    assert root.findtext("a:Case/a:ID", namespaces=Q) == "TW-00000001"
    assert root.findtext("a:Case/a:Status", namespaces=Q) == "Withdrawn"
    for same in ("a:Source/a:IP_Address", "a:Source/a:Port", "a:Source/a:TimeStamp", "a:Content/a:Item/a:Hash"):
        assert root.findtext(same, namespaces=Q) == sent.findtext(same, namespaces=Q)  # what the ISP has on file
    notice_text = root.findtext("a:TextNotice", namespaces=Q) or ""
    assert "We withdraw our notice TW-00000001" in notice_text
    assert withdrawals.REASONS[cause] in notice_text
    doc = json.loads(withdrawals.render_json(original, withdrawals.REASONS[cause], AT))
    assert (doc["kind"], doc["withdraws"], doc["retraction"], doc["withdrawn_at"]) == (
        "withdrawal", "TW-00000001", True, "2026-12-01T09:30:00.000Z")
    assert (doc["ip"], doc["port"]) == (original["ip"], original["port"])


def test_a_minimal_notice_withdraws_too() -> None:
    f = facts(port=None, client=None, subscriber_ref=None, also_seen=())
    xml = withdrawals.render_xml(render_xml(f), json.loads(render_json(f)), withdrawals.REASONS["voided"], AT)
    validate(xml)
    assert b"port" not in (ET.fromstring(xml).findtext("a:TextNotice", namespaces=Q) or "").encode()
