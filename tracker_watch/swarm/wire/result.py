"""What a verification found (ProbeResult), its time limits, and the code both directions share."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from tracker_watch.domain import peerwire as pw
from tracker_watch.swarm.wire.errors import ProbeFailure, Reason
from tracker_watch.swarm.wire.session import Deadlines, PeerSession, PieceSpec, verify_on


@dataclass(frozen=True)
class Timeouts:
    """Seconds. Phases are counted from their own start; `total` bounds the whole probe, retries included."""

    connect: float = 5.0
    handshake: float = 10.0   # MSE and BitTorrent handshakes
    have: float = 10.0        # until the peer advertises the piece
    unchoke: float = 30.0     # until it lets us request
    piece: float = 60.0       # until the whole piece arrived
    idle: float = 20.0        # longest silence at any time
    total: float = 120.0

    def deadlines(self) -> Deadlines:
        return Deadlines(handshake=self.handshake, have=self.have, unchoke=self.unchoke, piece=self.piece)


@dataclass
class ProbeResult:
    ip: str
    port: int
    info_hash: bytes
    piece_index: int
    started_at: datetime
    finished_at: datetime | None = None
    local: tuple[str, int] | None = None   # our address and port on the connection that decided the result
    connected: bool = False
    mse: bool = False                     # the MSE handshake completed
    encrypted: bool = False               # … and the peer selected RC4 for the payload
    handshake_ok: bool = False
    peer_id: bytes | None = None
    client: str | None = None             # `v` from the extension handshake
    reserved: bytes | None = None
    fast: bool = False
    extensions: tuple[str, ...] = ()
    yourip: str | None = None
    listen_port: int | None = None
    pieces_advertised: int | None = None
    has_piece: bool | None = None
    unchoked: bool = False
    bytes_received: int = 0               # raw bytes on the deciding connection, handshakes included
    bytes_sent: int = 0
    payload_bytes: int = 0                # bytes of the requested piece's blocks
    verified: bool | None = None          # True: hash matched; False: whole piece came and mismatched
    sha256: bytes | None = None           # SHA-256 of the piece as received (whenever it came whole)
    reason: Reason | None = None          # None when verified
    detail: str = ""
    attempts: list[str] = field(default_factory=list)
    timeline: dict[str, float] = field(default_factory=dict)  # seconds from connect to each milestone


def default_budget(spec: PieceSpec) -> int:
    """Bytes we accept on one connection: the piece twice over, its bitfield, and room for chatter."""
    return 2 * spec.size + pw.bitfield_len(spec.num_pieces) + 256 * 1024


async def run_session(result: ProbeResult, session: PeerSession, opening: Callable[[], Awaitable[None]]) -> None:
    """Run the opening (handshakes) and the piece fetch; whatever happens, record it and close."""
    try:
        await opening()
        await verify_on(session)
    except ProbeFailure as f:
        result.reason, result.detail = f.reason, f.detail
    finally:
        await session.stream.close()
        fill(result, session)


def fill(result: ProbeResult, session: PeerSession) -> None:
    r, stream = session.report, session.stream
    result.piece_index = session.spec.index  # an alternative piece may have replaced the first choice
    result.bytes_received, result.bytes_sent = stream.bytes_in, stream.bytes_out
    result.payload_bytes, result.verified, result.timeline = r.payload_bytes, r.verified, dict(r.timeline)
    result.sha256 = r.sha256
    result.pieces_advertised, result.has_piece, result.unchoked = r.pieces_advertised, r.has_piece, r.unchoked
    if r.handshake is not None:
        result.handshake_ok = True
        result.peer_id, result.reserved = r.handshake.peer_id, r.handshake.reserved
        result.fast = r.handshake.has(pw.FAST_BIT)
    if r.ext is not None:
        result.client, result.yourip, result.listen_port = r.ext.client, r.ext.yourip, r.ext.listen_port
        result.extensions = r.ext.extensions
    if r.verified is False and result.reason is None:
        result.reason, result.detail = Reason.HASH_MISMATCH, f"piece {session.spec.index} failed its SHA-1 check"
