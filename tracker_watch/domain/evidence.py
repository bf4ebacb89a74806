"""Evidence grades, peer sources and the observation record. Pure.

Grades rise with how directly we saw a peer take part in a swarm (see DESIGN.md):
listed < handshake < advertised < verified. `corrupt` stands apart: the peer sent data that failed the
hash check, which proves it is not a genuine source of the work, so it never counts toward a strike.
"""

from __future__ import annotations

import ipaddress
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum


class Grade(StrEnum):
    LISTED = "listed"
    HANDSHAKE = "handshake"
    ADVERTISED = "advertised"
    VERIFIED = "verified"
    CORRUPT = "corrupt"

    @property
    def rank(self) -> int:
        """Order for 'best grade'; corrupt ranks below everything so it never counts."""
        return _RANK[self]

    def at_least(self, other: Grade) -> bool:
        return self.rank >= other.rank


_RANK = {Grade.CORRUPT: -1, Grade.LISTED: 0, Grade.HANDSHAKE: 1, Grade.ADVERTISED: 2, Grade.VERIFIED: 3}


class Source(StrEnum):
    """How we learned of a peer."""

    TRACKER = "tracker"
    DHT = "dht"
    PEX = "pex"
    INCOMING = "incoming"
    LSD = "lsd"
    RESUME = "resume"
    MAGNET = "magnet"  # a magnet link's x.pe peer hint


# libtorrent's peer_info.source bits, in the order we prefer to report them
_LT_SOURCE_BITS = ((1, Source.TRACKER), (2, Source.DHT), (4, Source.PEX), (8, Source.LSD), (16, Source.RESUME))


def source_from_lt_bits(bits: int, incoming: bool) -> Source:
    if incoming:
        return Source.INCOMING
    for bit, source in _LT_SOURCE_BITS:
        if bits & bit:
            return source
    return Source.PEX


def normalize_ip(text: str) -> str:
    """Canonical text of an address; IPv4-mapped IPv6 (::ffff:1.2.3.4) becomes plain IPv4."""
    addr = ipaddress.ip_address(text.strip("[]"))
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


def utc_now_ms() -> datetime:
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


@dataclass(frozen=True)
class Observation:
    """One sighting of one peer in one target's swarm. Immutable once made; `id` is stable across retries."""

    target_id: int
    infohash_v1: bytes | None
    infohash_v2: bytes | None
    observed_at: datetime
    ip: str
    port: int
    source: Source
    grade: Grade
    node: str
    version: str
    tracker_url: str | None = None
    peer_id: bytes | None = None
    client: str | None = None
    pieces_advertised: int | None = None
    num_pieces: int | None = None
    pieces_verified: int = 0
    bytes_verified: int = 0
    our_ip: str | None = None
    our_port: int | None = None
    piece_index: int | None = None  # the piece this row reports as verified (or failed)
    piece_bytes: int | None = None  # bytes of that piece this peer supplied
    piece_sha1: bytes | None = None  # hashes of the piece's data, computed by us after libtorrent's check
    piece_sha256: bytes | None = None
    id: uuid.UUID = field(default_factory=uuid.uuid4)

    def evidence_fields(self) -> dict[str, object]:
        """The fields the hash chain covers, named as the database columns."""
        return {name: getattr(self, name) for name in OBSERVATION_FIELDS}


# Columns of an observation covered by its content hash (everything but the chain columns themselves).
OBSERVATION_FIELDS = (
    "id", "target_id", "infohash_v1", "infohash_v2", "observed_at", "ip", "port", "source", "tracker_url",
    "grade", "peer_id", "client", "pieces_advertised", "num_pieces", "pieces_verified", "bytes_verified",
    "node", "version", "our_ip", "our_port", "piece_index", "piece_bytes", "piece_sha1", "piece_sha256",
)
# Blanked by retention; everything else stays.
PERSONAL_FIELDS = ("ip", "port", "peer_id", "client")


# --- the spool's record of an observation -------------------------------------------------------------
# A JSON array in OBSERVATION_FIELDS order behind a version tag: compact, and a field added later
# gets a new version rather than silently shifting positions.
_RECORD_VERSION = 1
_BYTES_FIELDS = frozenset({"infohash_v1", "infohash_v2", "peer_id", "piece_sha1", "piece_sha256"})


def encode_observation(o: Observation) -> bytes:
    values: list[object] = [_RECORD_VERSION]
    for name in OBSERVATION_FIELDS:
        v = getattr(o, name)
        if v is None or (isinstance(v, int | str) and not isinstance(v, StrEnum)):
            values.append(v)
        elif isinstance(v, bytes):
            values.append(v.hex())
        elif isinstance(v, StrEnum):
            values.append(v.value)
        elif isinstance(v, datetime):
            values.append(v.isoformat())
        else:  # uuid
            values.append(str(v))
    return json.dumps(values, separators=(",", ":")).encode()


def decode_observation(data: bytes) -> Observation:
    """The inverse of encode_observation; ValueError on anything it did not write."""
    try:
        values = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not an observation record: {exc}") from None
    if not isinstance(values, list) or values[:1] != [_RECORD_VERSION] or len(values) != len(OBSERVATION_FIELDS) + 1:
        raise ValueError("not an observation record of version 1")
    kw: dict[str, object] = {}
    for name, v in zip(OBSERVATION_FIELDS, values[1:], strict=True):
        if v is not None and name in _BYTES_FIELDS:
            v = bytes.fromhex(v)
        kw[name] = v
    kw["id"] = uuid.UUID(str(kw["id"]))
    kw["observed_at"] = datetime.fromisoformat(str(kw["observed_at"]))
    kw["source"] = Source(str(kw["source"]))
    kw["grade"] = Grade(str(kw["grade"]))
    return Observation(**kw)  # type: ignore[arg-type]
