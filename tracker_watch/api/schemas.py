"""JSON Schemas (2020-12, as OpenAPI 3.1 uses them) for request and response bodies."""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

TS: Schema = {"type": "string", "format": "date-time"}
HEX40: Schema = {"type": "string", "pattern": "^[0-9a-f]{40}$"}
HEX64: Schema = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
ID: Schema = {"type": "integer", "minimum": 1, "maximum": 2**62}
# text bound for a text column: not blank, no NUL (PostgreSQL cannot store it), bounded
TEXT_PATTERN = "^[^\\u0000]*[^\\u0000\\s][^\\u0000]*$"
TITLE: Schema = {"type": "string", "minLength": 1, "maxLength": 500, "pattern": TEXT_PATTERN}
NAME: Schema = {"type": "string", "minLength": 1, "maxLength": 200, "pattern": TEXT_PATTERN}
GRADES = ["listed", "handshake", "advertised", "verified", "corrupt"]


def nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def obj(properties: dict[str, Schema], required: list[str] | None = None) -> Schema:
    return {"type": "object", "properties": properties, "required": required if required is not None
            else list(properties), "additionalProperties": False}


def page(item: Schema, cursor: Schema | None = None) -> Schema:
    return obj({"items": {"type": "array", "items": item}, "next_cursor": nullable(cursor or {"type": "string"})})


PROBLEM: Schema = {"type": "object", "required": ["type", "title", "status", "detail"],
                   "properties": {"type": {"type": "string"}, "title": {"type": "string"},
                                  "status": {"type": "integer"}, "detail": {"type": "string"},
                                  "instance": {"type": "string"}, "errors": {"type": "array"}}}

WORK = obj({"id": ID, "title": {"type": "string"}, "holder": {"type": "string"}, "created_at": TS})
WORK_CREATE = obj({"title": TITLE, "holder": NAME}, required=["title"])

# exact: a value of this shape is either registered or answered 400 for what no schema can say (a magnet's
# tracker URLs, whether the bytes of a .torrent are one)
INFOHASH: Schema = {"type": "string", "pattern": "^([0-9a-fA-F]{40}|[0-9a-fA-F]{64})$",
                    "description": "40 (v1) or 64 (v2) hex digits"}
MAGNET: Schema = {"type": "string", "maxLength": 65536,
                  "pattern": "^[Mm][Aa][Gg][Nn][Ee][Tt]:[?]([^\\u0000]*&)?xt=urn:bt(ih:([0-9a-fA-F]{40}|[A-Z2-7]{32})"
                             "|mh:1220[0-9a-fA-F]{64})(&[^\\u0000]*)?$",
                  "description": "a magnet link (magnet:?xt=urn:btih:<40 hex or 32 base32> and/or "
                                 "xt=urn:btmh:1220<64 hex>)"}
BASE64: Schema = {"type": "string", "maxLength": 20_000_000, "contentEncoding": "base64",
                  "contentMediaType": "application/x-bittorrent",
                  "pattern": "^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$",
                  "description": "a .torrent file, base64-encoded (RFC 4648, padded)"}
TARGET_INPUT = {"infohash": INFOHASH, "magnet": MAGNET, "torrent_base64": BASE64}
TARGET_CREATE: Schema = obj({"work": TITLE, "work_id": ID, "holder": {**NAME, "description": "operators only"},
                             **TARGET_INPUT}, required=[])
TARGET_CREATE["oneOf"] = [{"required": [k]} for k in TARGET_INPUT]
TARGET_CREATE["anyOf"] = [{"required": ["work"]}, {"required": ["work_id"]}]
TARGET_CREATE["description"] = "exactly one of infohash, magnet, torrent_base64; and work (a title) or work_id"
UPLOAD_FIELDS: Schema = obj({"work": TITLE, "work_id": {"type": "string", "pattern": "^[1-9][0-9]{0,17}$"},
                             "holder": NAME}, required=[])
UPLOAD_FIELDS["anyOf"] = TARGET_CREATE["anyOf"]
UPLOAD_FIELDS["description"] = "work (a title) or work_id"
TARGET_UPLOAD: Schema = {**UPLOAD_FIELDS, "required": ["torrent"], "properties": {
    "torrent": {"type": "string", "format": "binary", "contentMediaType": "application/x-bittorrent"},
    **UPLOAD_FIELDS["properties"]}}
TARGET: Schema = obj({
    "id": ID, "work_id": ID, "work": {"type": "string"}, "holder": {"type": "string"},
    "infohash_v1": nullable(HEX40), "infohash_v2": nullable(HEX64),
    "registered_as": {"enum": ["hex", "magnet", "torrent"]}, "display_name": nullable({"type": "string"}),
    "trackers": {"type": "array", "items": {"type": "string"}},
    "peer_hints": {"type": "array", "items": {"type": "string"}, "maxItems": 50,
                   "description": "the magnet's x.pe peer addresses (literal IPs only; names are never resolved)"},
    "status": {"enum": ["active", "paused", "deleted", "error"]},
    "error": nullable({"type": "string", "description": "why the target could not be watched (status error); "
                                                        "resume it to try again"}),
    "metadata": nullable(obj({"name": {"type": "string"}, "total_size": {"type": "integer"},
                              "num_pieces": {"type": "integer"}})),
    "live": obj({"watched": {"type": "boolean"}, "peers_connected": {"type": "integer", "minimum": 0},
                 "last_seen": nullable(TS)}),
    "created_at": TS})
BULK = obj({"targets": {"type": "array", "minItems": 1, "maxItems": 10_000, "items": TARGET_CREATE}})
BULK_RESULT = obj({"created": {"type": "integer"}, "existing": {"type": "integer"},
                   "target_ids": {"type": "array", "items": ID}})

OBSERVATION = obj({
    "id": {"type": "string", "format": "uuid"}, "target_id": ID, "observed_at": TS, "ip": nullable({"type": "string"}),
    "port": nullable({"type": "integer"}), "source": {"type": "string"}, "tracker_url": nullable({"type": "string"}),
    "grade": {"enum": GRADES}, "peer_id": nullable({"type": "string"}), "client": nullable({"type": "string"}),
    "pieces_advertised": nullable({"type": "integer"}), "num_pieces": nullable({"type": "integer"}),
    "pieces_verified": {"type": "integer"}, "bytes_verified": {"type": "integer"},
    "piece_index": nullable({"type": "integer"}), "piece_sha1": nullable(HEX40), "piece_sha256": nullable(HEX64),
    "our_ip": nullable({"type": "string"}), "our_port": nullable({"type": "integer"}),
    "node": {"type": "string"}, "chain_seq": nullable({"type": "integer"}), "redacted": {"type": "boolean"}})
INCIDENT = obj({
    "id": ID, "target_id": ID, "ip": nullable({"type": "string"}), "window_start": TS, "first_seen": TS,
    "last_seen": TS, "best_grade": {"enum": GRADES[:4]}, "corrupt": {"type": "boolean"},
    "ports": {"type": "array", "items": {"type": "integer"}},
    "pieces_verified": {"type": "array", "items": {"type": "integer"}}, "bytes_verified": {"type": "integer"},
    "observations": {"type": "integer"}, "legal_hold": {"type": "boolean"}})
SUBJECT = obj({"id": ID, "kind": {"enum": ["subscriber", "ip"]}, "isp": nullable({"type": "string"}),
               "subscriber_ref": nullable({"type": "string"}), "ip": nullable({"type": "string"})})
STRIKE = obj({
    "id": ID, "level": {"type": "integer", "minimum": 1, "maximum": 3},
    "level_name": {"enum": ["notification", "warning", "referral"]},
    "status": {"enum": ["active", "voided", "superseded"]}, "issued_at": TS, "cycle_start": TS,
    "subject": SUBJECT, "work": obj({"id": ID, "title": {"type": "string"}}),
    "notice": nullable(obj({"id": ID, "state": {"type": "string"}})), "reason": nullable({"type": "string"})})
VOID = obj({"reason": {"type": "string", "minLength": 1, "maxLength": 2000, "pattern": TEXT_PATTERN}})
VOID_RESULT = obj({"voided": ID, "created": {"type": "integer"}, "superseded": {"type": "integer"},
                   "withdrawals": {"type": "integer"}})
NOTICE = obj({
    "id": ID, "strike_id": ID, "isp": nullable({"type": "string"}), "level": {"type": "integer"},
    "state": {"enum": ["pending", "delivered", "failed", "held", "cancelled"]}, "attempts": {"type": "integer"},
    "last_error": nullable({"type": "string"}), "delivered_at": nullable(TS), "created_at": TS,
    "kind": {"enum": ["notice", "withdrawal"]}, "withdraws": nullable(ID)})
TOKEN = obj({"id": ID, "name": {"type": "string"}, "role": {"enum": ["rightsholder", "operator", "isp"]},
             "created_at": TS, "revoked_at": nullable(TS)})
TOKEN_CREATE = obj({"role": {"enum": ["rightsholder", "operator", "isp"]}, "name": NAME})
TOKEN_CREATED = obj({**TOKEN["properties"], "token": {"type": "string"}})
HEALTH = obj({"status": {"enum": ["ok", "ready"]}})

_PARTY = obj({"entity": {"type": "string"}, "email": {"type": "string"}, "contact": nullable({"type": "string"}),
              "address": nullable({"type": "string"}), "phone": nullable({"type": "string"}),
              "url": nullable({"type": "string"})})
# the JSON twin of the ACNS notice (domain/notices.py render_json), as stored and sent
NOTICE_DOCUMENT = obj({
    "notice_id": {"type": "string"}, "level": {"type": "integer", "minimum": 1, "maximum": 3},
    "level_name": {"enum": ["notification", "warning", "referral"]}, "level_text": {"type": "string"},
    "issued_at": TS, "complainant": _PARTY, "service_provider": _PARTY, "ip": {"type": "string"},
    "port": nullable({"type": "integer"}), "seen_at": TS, "title": {"type": "string"},
    "file_name": {"type": "string"}, "file_size": {"type": "integer"}, "infohash_v1": nullable(HEX40),
    "infohash_v2": nullable(HEX64), "client": nullable({"type": "string"}),
    "subscriber_ref": nullable({"type": "string"}),
    "also_seen": {"type": "array", "items": {"type": "array", "items": TS, "minItems": 2, "maxItems": 2}},
    "pieces_verified": {"type": "integer"}, "bytes_verified": {"type": "integer"}, "software": {"type": "string"},
    "evidence": {"type": "object"}, "text": {"type": "string"},
    "signing_keys": {"type": "array", "description": "(node, key fingerprint) of the chains holding the evidence",
                     "items": {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 2}},
    # a withdrawal (domain/withdrawals.py) is the notice it withdraws plus these
    "kind": {"enum": ["withdrawal"]}, "withdraws": {"type": "string"}, "retraction": {"const": True},
    "withdrawn_at": TS, "withdrawal_reason": {"type": "string"}})
NOTICE_DOCUMENT["required"] = [k for k in NOTICE_DOCUMENT["required"]
                               if k not in ("kind", "withdraws", "retraction", "withdrawn_at", "withdrawal_reason")]
