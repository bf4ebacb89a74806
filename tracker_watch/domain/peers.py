"""What the swarm engine reports about peers: plain data, copied out of libtorrent before the next alert pop.

`swarm` is the swarm's key (hex of its v1 infohash, else of its v2 one); `at` is when libtorrent saw it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from tracker_watch.domain.evidence import Source

Endpoint = tuple[str, int]


@dataclass(frozen=True)
class PeerListed:
    """A tracker, the DHT or PEX named this address. Proves nothing about the address."""

    swarm: str
    peer: Endpoint
    source: Source
    at: datetime
    tracker_url: str | None = None


@dataclass(frozen=True)
class PeerSnapshot:
    """A connected peer as libtorrent sees it now."""

    swarm: str
    peer: Endpoint
    at: datetime
    handshake_done: bool
    incoming: bool
    source_bits: int
    peer_id: bytes | None
    client: str | None
    pieces_advertised: int | None  # None until metadata is known (the bitfield has no length before)
    num_pieces: int | None
    local: Endpoint | None


@dataclass(frozen=True)
class PeerGone:
    """A connection ended (or never opened). A peer id is only known once the handshake completed."""

    swarm: str
    peer: Endpoint
    at: datetime
    peer_id: bytes | None
    connect_failed: bool


@dataclass(frozen=True)
class PieceSettled:
    """A piece finished (passed the hash check) or failed it, with the bytes each peer supplied."""

    swarm: str
    piece: int
    passed: bool
    at: datetime
    contributions: tuple[tuple[Endpoint, bytes | None, int], ...]  # (peer, peer id, bytes supplied)
    sha1: bytes | None = None  # of the piece's data, read back after it passed
    sha256: bytes | None = None


@dataclass(frozen=True)
class PeerLied:
    """Proven to have sent data that is not the work, without being the sole sender of one piece: libtorrent
    banned it for hash failures, it took part in failed pieces, and no piece with its data ever passed."""

    swarm: str
    peer: Endpoint
    at: datetime
    peer_id: bytes | None


PeerEvent = PeerListed | PeerSnapshot | PeerGone | PieceSettled | PeerLied
