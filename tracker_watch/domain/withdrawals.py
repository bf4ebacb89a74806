"""Withdrawing a notice the ISP may have received: ACNS XML and a JSON twin. Pure.

ACNS has a place for this: the same `Infringement` document (same `Case/ID`, so the ISP matches it to
the notice it holds) with `<Type Retraction="true">` and the case closed. We start from the notice as
it was sent, so Source and Content are exactly what the ISP has on file, and change only the case
status, the type and the text. The JSON twin is the original JSON with `kind: "withdrawal"`.
The reason sent is a fixed phrase per cause: an operator's own words may concern the subscriber's
private circumstances and stay in our audit log.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from xml.etree import ElementTree as ET

from tracker_watch.domain.notices import NS

REASONS = {
    "voided": "the strike was voided after a review of the evidence",
    "rested_on_void": "it rested on an earlier strike that has been voided",
    "evidence": "the evidence no longer meets our notice policy",
}


def _ts(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def text(original: dict[str, Any], reason: str, at: datetime) -> str:
    port = original.get("port")
    where = f"{original.get('ip')}" + (f", port {port}" if port is not None else "")
    return (f"Dear {original['service_provider']['entity']},\n\n"
            f"We withdraw our notice {original['notice_id']} ({original.get('level_name', '')}) concerning "
            f"\"{original['title']}\" shared from {where} on {original['seen_at']}: {reason}.\n"
            "Please disregard that notice and remove it from the subscriber's record.\n\n"
            f"Withdrawn: {_ts(at)}\n"
            f"Contact: {original['complainant']['entity']} <{original['complainant']['email']}>\n")


def render_xml(original_xml: bytes, original: dict[str, Any], reason: str, at: datetime) -> bytes:
    root = ET.fromstring(original_xml)  # our own rendering (domain/notices.py), never outside input
    q = {"a": NS}
    status = root.find("a:Case/a:Status", q)
    if status is not None:
        status.text = "Withdrawn"
    kind = root.find("a:Type", q)
    if kind is not None:
        kind.set("Retraction", "true")
        kind.set("Comments", f"Withdrawal of notice {original['notice_id']}: {reason}")
    notice_text = root.find("a:TextNotice", q)
    if notice_text is not None:
        notice_text.text = text(original, reason, at)
    xml: bytes = ET.tostring(root, encoding="UTF-8", xml_declaration=True)
    return xml


def render_json(original: dict[str, Any], reason: str, at: datetime) -> bytes:
    doc = dict(original)
    doc.update(kind="withdrawal", withdraws=original["notice_id"], retraction=True, withdrawn_at=_ts(at),
               withdrawal_reason=reason, text=text(original, reason, at))
    return json.dumps(doc, indent=2, sort_keys=True).encode()
