"""The evidence hash chain: canonical encoding, link hashes, and the verification walk. Pure.

Every evidence row (an observation or an incident change) belongs to the chain of the node that wrote
it, at position `seq` (1, 2, …). For each row:

    content_hash = SHA-256(canonical encoding of its fields)
    row_hash     = SHA-256("tracker-watch/chain/v1" ‖ node ‖ seq ‖ prev_hash ‖ content_hash)

where prev_hash is the row_hash of position seq−1 (32 zero bytes before the first row). The canonical
encoding is JSON with sorted keys and no spaces; times are UTC ISO-8601 with microseconds and a "Z",
bytes are lowercase hex, addresses are in canonical text form. Redaction (retention) blanks personal
fields but keeps content_hash, so the chain still verifies and the row is reported as redacted.

That is chain format v1. Rows written since format v2 (chain_v2.py: a fixed binary encoding instead
of JSON, and "tracker-watch/chain/v2" as the link's domain) carry format 2; one chain may hold both, and
every function here that hashes takes the row's format (default 1, so v1 callers read as before).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import struct
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Literal

from tracker_watch.domain import chain_v2

GENESIS = bytes(32)
_DOMAIN = b"tracker-watch/chain/v1"
_DOMAINS = {1: _DOMAIN, chain_v2.FORMAT: chain_v2.DOMAIN}
FORMATS = tuple(_DOMAINS)


def plain(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime in evidence")
        v = value.astimezone(UTC)
        return v.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    raise TypeError(f"cannot encode {type(value).__name__} canonically")


def canonical(kind: str, fields: Mapping[str, Any]) -> bytes:
    doc = {k: plain(v) for k, v in fields.items()}
    doc["kind"] = kind
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def content_hash(kind: str, fields: Mapping[str, Any], fmt: int = 1) -> bytes:
    if fmt == chain_v2.FORMAT:
        return chain_v2.content_hash(kind, fields)
    if fmt != 1:
        raise ValueError(f"unknown chain format {fmt}")
    return hashlib.sha256(canonical(kind, fields)).digest()


def link_hash(node: str, seq: int, prev_hash: bytes, content: bytes, fmt: int = 1) -> bytes:
    node_raw = node.encode()
    return hashlib.sha256(_DOMAINS[fmt] + struct.pack(">H", len(node_raw)) + node_raw + struct.pack(">Q", seq)
                          + prev_hash + content).digest()


@dataclass(frozen=True)
class Link:
    seq: int
    content_hash: bytes
    prev_hash: bytes
    row_hash: bytes


def extend(node: str, head_seq: int, head_hash: bytes, contents: Iterable[bytes], fmt: int = 1) -> list[Link]:
    """Chain links for new rows (all of format `fmt`) appended after (head_seq, head_hash)."""
    links, prev, seq = [], head_hash, head_seq
    for content in contents:
        seq += 1
        row = link_hash(node, seq, prev, content, fmt)
        links.append(Link(seq, content, prev, row))
        prev = row
    return links


# --- verification --------------------------------------------------------------------------------
Problem = Literal["edited", "deleted", "inserted", "reordered"]


@dataclass(frozen=True)
class ChainRow:
    """A stored row as the verifier sees it; `recomputed` is None when the row is redacted."""

    node: str
    seq: int
    kind: str
    ref: str  # what an operator needs to find the row (observation id, incident id)
    content_hash: bytes
    prev_hash: bytes
    row_hash: bytes
    recomputed: bytes | None
    format: int = 1  # the chain format it was written in (its content encoding and link domain)


@dataclass(frozen=True)
class Finding:
    problem: Problem
    node: str
    seq: int
    kind: str
    ref: str
    detail: str


@dataclass(frozen=True)
class Report:
    rows: int
    redacted: int
    finding: Finding | None


@dataclass
class WalkState:
    """Where a walk stands, so that a long chain can be verified chunk by chunk."""

    seq: int = 0
    head: bytes = GENESIS


def verify_chain(node: str, rows: Sequence[ChainRow], state: WalkState | None = None) -> Report:
    """Walk one node's rows in seq order; report the first edited, deleted, inserted or reordered row."""
    state = state or WalkState()
    by_hash = {r.row_hash: i for i, r in enumerate(rows)}
    redacted = 0
    for i, row in enumerate(rows):
        redacted += row.recomputed is None
        problem = _check(node, rows, i, by_hash, state)
        if problem is not None:
            return Report(i, redacted - (row.recomputed is None),
                          Finding(problem[0], node, row.seq, row.kind, row.ref, problem[1]))
        state.seq, state.head = row.seq, row.row_hash
    return Report(len(rows), redacted, None)


def _check(node: str, rows: Sequence[ChainRow], i: int, by_hash: dict[bytes, int],
           state: WalkState) -> tuple[Problem, str] | None:
    row, expected_seq, expected_prev = rows[i], state.seq + 1, state.head
    if row.recomputed is not None and row.recomputed != row.content_hash:
        return "edited", "its fields no longer match the hash recorded when it was written"
    linked = by_hash.get(row.prev_hash)
    if row.format not in _DOMAINS:
        return "edited", f"it claims chain format {row.format}, which does not exist"
    if link_hash(node, row.seq, row.prev_hash, row.content_hash, row.format) != row.row_hash:
        return _misplaced(node, row, i, linked, rows[linked].seq if linked is not None else None, expected_prev)
    if row.seq != expected_seq:
        if row.seq > expected_seq and linked is None:
            return "deleted", f"rows {expected_seq}..{row.seq - 1} are missing before it"
        if linked is not None and linked != i - 1:
            return "reordered", f"it links to position {rows[linked].seq}"
        return "inserted", f"it sits at position {row.seq} where {expected_seq} was due"
    if row.prev_hash != expected_prev:
        nxt = rows[i + 1] if i + 1 < len(rows) else None
        if nxt is not None and nxt.prev_hash == expected_prev:
            return "inserted", "the next row links past it to the row before it"
        if linked is not None:
            return "reordered", f"it links to position {rows[linked].seq}, not {expected_seq - 1}"
        return "deleted", f"the row it links to (before position {row.seq}) is missing"
    return None


def _misplaced(node: str, row: ChainRow, i: int, linked: int | None, linked_seq: int | None,
               expected_prev: bytes) -> tuple[Problem, str]:
    """The row's hash does not hold at its position: say how it got there."""
    if row.prev_hash == expected_prev:
        return "edited", "its stored hashes were altered"

    def valid_at(seq: int) -> bool:
        return link_hash(node, seq, row.prev_hash, row.content_hash, row.format) == row.row_hash

    if valid_at(row.seq - 1) and linked == i - 2:
        return "inserted", f"a row was put in before it at position {row.seq - 1} and later rows renumbered"
    if valid_at(row.seq + 1) and linked is None:
        return "deleted", f"the row before it was removed and later rows renumbered (it was at {row.seq + 1})"
    if linked is not None:
        return "reordered", f"it was written right after the row now at position {linked_seq}"
    return "inserted", "it was never part of the chain: its hashes link to nothing"


def checkpoint_message(node: str, seq: int, head_hash: bytes, signed_at: datetime) -> bytes:
    """The bytes a checkpoint signature covers."""
    return (f"tracker-watch checkpoint v1\nnode={node}\nseq={seq}\nhead={head_hash.hex()}\n"
            f"signed_at={plain(signed_at)}\n").encode()


def key_fingerprint(public_key: bytes) -> str:
    """How a signing key is published and pinned: SHA-256 of the raw 32-byte Ed25519 key, in groups of four.

    verify.py computes the same (package_verify.fingerprint); the key id is its first 16 hex digits.
    """
    digest = hashlib.sha256(public_key).hexdigest()
    return "SHA256:" + ":".join(digest[i:i + 4] for i in range(0, 64, 4))
