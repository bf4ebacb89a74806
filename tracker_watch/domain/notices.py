"""ISP notices: ACNS 2.0 (v1.2) XML, as ISPs' abuse desks parse it today, and a JSON twin. Pure.

The XML is built with ElementTree (so every text field is escaped) in the ACNS namespace with the
elements in schema order; tests validate every notice they produce against the ACNS 1.2 schema.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any
from xml.etree import ElementTree as ET

from tracker_watch.domain.policy import LEVEL_NAMES, LEVEL_TEXT

NS = "http://www.acns.net/ACNS"
ET.register_namespace("", NS)


@dataclass(frozen=True)
class Party:
    entity: str
    email: str
    contact: str | None = None
    address: str | None = None
    phone: str | None = None
    url: str | None = None


@dataclass(frozen=True)
class NoticeFacts:
    notice_id: str
    level: int
    issued_at: datetime
    complainant: Party
    service_provider: Party
    ip: str
    port: int | None
    seen_at: datetime  # first verified sighting in the triggering incident
    title: str
    file_name: str
    file_size: int
    infohash_v1: str | None
    infohash_v2: str | None
    client: str | None = None
    subscriber_ref: str | None = None
    also_seen: tuple[tuple[datetime, datetime], ...] = ()
    pieces_verified: int = 0
    bytes_verified: int = 0
    software: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)  # references into the ledger (ids, chain positions)
    signing_keys: tuple[tuple[str, str], ...] = ()  # (node, key fingerprint) of the nodes whose chains hold it


def _ts(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def text(f: NoticeFacts) -> str:
    """The notice in plain language (TextNotice in the XML, `text` in the JSON)."""
    lines = [
        f"Dear {f.service_provider.entity},",
        "",
        f"On {_ts(f.seen_at)} the BitTorrent client at {f.ip}" + (f", port {f.port}" if f.port is not None else "")
        + f" delivered to us data of \"{f.title}\" ({f.file_name}, {f.file_size} bytes) that passed the "
        "cryptographic hash check against the published torrent.",
        "",
        LEVEL_TEXT[f.level],
        "",
        f"Notice: {f.notice_id}",
        f"Infohash: {f.infohash_v1 or f.infohash_v2}",
        f"Verified pieces with data from this peer: {f.pieces_verified} ({f.bytes_verified} bytes from it)",
    ]
    if f.subscriber_ref:
        lines.append(f"Subscriber reference (from your lease data): {f.subscriber_ref}")
    # the fingerprint lets the reader pin an evidence package to us: python3 verify.py --key FINGERPRINT
    lines += [f"Evidence signing key of node {node}: {fp}" for node, fp in f.signing_keys]
    lines += ["", f"Contact: {f.complainant.entity} <{f.complainant.email}>"]
    return "\n".join(lines) + "\n"


def render_xml(f: NoticeFacts) -> bytes:
    root = ET.Element(_q("Infringement"))
    case = _sub(root, "Case")
    _sub(case, "ID", f.notice_id)
    _sub(case, "Status", "Open")
    _sub(case, "Severity", "Normal" if f.level < 3 else "High")
    _party(_sub(root, "Complainant"), f.complainant)
    _party(_sub(root, "Service_Provider"), f.service_provider)
    source = _sub(root, "Source")
    _sub(source, "TimeStamp", _ts(f.seen_at))
    _sub(source, "IP_Address", f.ip)
    if f.port is not None:
        _sub(source, "Port", str(f.port))
    _sub(source, "Type", "BitTorrent")
    sub_type = _sub(source, "SubType")
    sub_type.set("BaseType", "P2P")
    sub_type.set("Protocol", "BITTORRENT")
    if f.client:
        sub_type.set("Application", f.client)
    item = _sub(_sub(root, "Content"), "Item")
    _sub(item, "TimeStamp", _ts(f.seen_at))
    for start, end in f.also_seen:
        seen = _sub(item, "AlsoSeen")
        seen.set("Start", _ts(start))
        seen.set("End", _ts(end))
    _sub(item, "Title", f.title)
    _sub(item, "FileName", f.file_name)
    _sub(item, "FileSize", str(f.file_size))
    hash_el = _sub(item, "Hash", (f.infohash_v1 or f.infohash_v2 or "").upper())
    hash_el.set("Type", "SHA1" if f.infohash_v1 else "SHA256")
    if f.subscriber_ref:
        _sub(root, "Notes", f"Subscriber reference (from your lease data): {f.subscriber_ref}")
    kind = _sub(root, "Type", "INFRINGEMENT")
    kind.set("Retraction", "false")
    kind.set("Comments", f"Strike {f.level} of 3: {LEVEL_NAMES[f.level]}")
    detection = _sub(root, "Detection")
    _sub(_sub(detection, "Asset"), "OriginalAssetName", f.title)
    _sub(detection, "HashMatched", "true")
    _sub(detection, "VerificationID", f.software or "tracker-watch")
    _sub(root, "TextNotice", text(f))
    xml: bytes = ET.tostring(root, encoding="UTF-8", xml_declaration=True)
    return xml


def render_json(f: NoticeFacts) -> bytes:
    # field by field rather than dataclasses.asdict, whose deep copies were most of a notice's cost
    doc = {k.name: _plain(getattr(f, k.name)) for k in fields(NoticeFacts)}
    doc["also_seen"] = [[_ts(a), _ts(b)] for a, b in f.also_seen]
    doc["level_name"] = LEVEL_NAMES[f.level]
    doc["level_text"] = LEVEL_TEXT[f.level]
    doc["text"] = text(f)
    return json.dumps(doc, indent=2, sort_keys=True).encode()


def _plain(v: Any) -> Any:
    if isinstance(v, Party):
        return {k.name: getattr(v, k.name) for k in fields(Party)}
    return _ts(v) if isinstance(v, datetime) else v


def _q(tag: str) -> str:
    return f"{{{NS}}}{tag}"


def _sub(parent: ET.Element, tag: str, value: str | None = None) -> ET.Element:
    el = ET.SubElement(parent, _q(tag))
    if value is not None:
        el.text = value
    return el


def _party(el: ET.Element, p: Party) -> None:
    _sub(el, "Entity", p.entity)
    for tag, value in (("Contact", p.contact), ("Address", p.address), ("Phone", p.phone)):
        if value:
            _sub(el, tag, value)
    _sub(el, "Email", p.email)
    if p.url:
        _sub(el, "ContactURL", p.url)
