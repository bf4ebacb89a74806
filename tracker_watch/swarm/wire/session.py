"""One verification on an established stream: BitTorrent handshake, extension handshake, availability,
interest, requests for the blocks of exactly one piece, SHA-1 check.

Works for a connection we dialled (`initiator=True`) and for one the peer opened to us (we read its
handshake first), so incoming connections can be verified too. We never upload: we advertise no pieces
(have_none, or an all-zero bitfield), never unchoke, reject the peer's requests when BEP 6 allows it,
and `_send` refuses to emit a piece message. The piece lives in memory only and is dropped after hashing.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from tracker_watch.domain import peerwire as pw
from tracker_watch.swarm.wire.errors import DeadlinePassed, ProbeFailure, Reason
from tracker_watch.swarm.wire.stream import WireStream

# A piece this large is hashed in a worker thread (hashlib lets go of the GIL past 2 KiB): pieces run from 16 KiB
# to 16 MiB, and SHA-1 plus SHA-256 of 16 MiB hold the event loop 24 ms on this project's test machine (0.9 ms
# at 256 KiB, 0.04 ms at 16 KiB), once per proof. Below this size the hand-over costs more than it saves.
OFF_LOOP_BYTES = 256 * 1024
PIPELINE = 4           # blocks in flight: enough to fill a loopback or LAN link, polite to slow peers
MAX_REJECTS = 3        # per block, before we stop asking


@dataclass(frozen=True)
class PieceSpec:
    """The piece to verify. `size` is that piece's own length (the last piece is shorter)."""

    info_hash: bytes
    num_pieces: int
    index: int
    size: int
    sha1: bytes

    def __post_init__(self) -> None:
        if len(self.info_hash) != 20 or len(self.sha1) != 20:
            raise ValueError("infohash and piece hash must be 20 bytes (v1)")
        if not 0 <= self.index < self.num_pieces or self.size <= 0:
            raise ValueError("piece index or size out of range")

    def blocks(self) -> list[tuple[int, int]]:
        return [(b, min(pw.BLOCK, self.size - b)) for b in range(0, self.size, pw.BLOCK)]


@dataclass(frozen=True)
class Deadlines:
    """Seconds allowed for each phase, counted from the phase's start."""

    handshake: float
    have: float        # after the handshake: until the peer has advertised our piece
    unchoke: float     # after interested: until we may request
    piece: float       # after the first request: until the whole piece arrived


@dataclass
class SessionReport:
    """What we learned, filled in as we go, so a failure still reports how far the peer got."""

    handshake: pw.Handshake | None = None
    ext: pw.ExtHandshake | None = None
    pieces_advertised: int | None = None
    has_piece: bool | None = None
    unchoked: bool = False
    payload_bytes: int = 0     # bytes of our piece's blocks received
    verified: bool | None = None
    sha256: bytes | None = None  # of the piece as received: a content fingerprint beside the v1 check
    notes: list[str] = field(default_factory=list)
    # seconds from the session's start to each milestone: handshake, has_piece, requested, piece
    timeline: dict[str, float] = field(default_factory=dict)


class PeerSession:
    def __init__(self, stream: WireStream, spec: PieceSpec, peer_id: bytes, client_name: str,
                 deadlines: Deadlines, alternatives: Sequence[PieceSpec] = ()) -> None:
        self.stream, self.spec, self.peer_id = stream, spec, peer_id
        # other pieces we may verify instead, in order, when the peer's first word says it lacks `spec`
        self._alternatives = [a for a in alternatives
                              if (a.info_hash, a.num_pieces) == (spec.info_hash, spec.num_pieces) and a != spec]
        self.client_name, self.deadlines = client_name, deadlines
        self.report = SessionReport()
        self.decoder = pw.FrameDecoder(spec.num_pieces)
        self._fast = False
        self._choked = True
        self._allowed_fast: set[int] = set()
        self._advertised: set[int] = set()
        self._have_all = False
        self._queue = spec.blocks()
        self._in_flight: dict[int, int] = {}
        self._got: dict[int, bytes] = {}
        self._rejects = 0
        self._interested = False
        self._t0 = asyncio.get_running_loop().time()

    def _mark(self, milestone: str) -> None:
        self.report.timeline.setdefault(milestone, round(self._now() - self._t0, 3))

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _send(self, msg: pw.Message) -> None:
        if msg.kind == pw.PIECE:  # the zero-upload invariant, enforced where bytes leave
            raise AssertionError("a verifier never sends piece data")
        self.stream.write(pw.encode(msg))

    def our_handshake(self) -> bytes:
        reserved = pw.reserved_bits(pw.EXTENSION_BIT, pw.FAST_BIT)
        return pw.encode_handshake(self.spec.info_hash, self.peer_id, reserved)

    async def handshake(self, *, sent: bool, initiator: bool = True) -> None:
        """Exchange BT handshakes. `sent`: ours already went out (inside the MSE initial payload)."""
        deadline = self._now() + self.deadlines.handshake
        if initiator and not sent:
            self.stream.write(self.our_handshake())
        theirs = await self.stream.read_exactly(pw.HANDSHAKE_LEN, deadline, "handshake")
        try:
            hs = pw.parse_handshake(theirs)
        except pw.WireError as e:
            raise ProbeFailure(Reason.PROTOCOL, f"handshake: {e}") from None
        if hs.info_hash != self.spec.info_hash:
            raise ProbeFailure(Reason.WRONG_INFOHASH, f"peer answered for infohash {hs.info_hash.hex()}")
        if hs.peer_id == self.peer_id:
            raise ProbeFailure(Reason.SELF, "peer id is our own")
        self.report.handshake = hs
        self._mark("handshake")
        if not initiator and not sent:
            self.stream.write(self.our_handshake())
        self._fast = hs.has(pw.FAST_BIT)
        self._send(pw.Message(pw.HAVE_NONE) if self._fast else pw.empty_bitfield(self.spec.num_pieces))
        if hs.has(pw.EXTENSION_BIT):
            self._send(pw.encode_ext_handshake(self.client_name))
        await self.stream.drain(deadline, "handshake")

    async def fetch_piece(self) -> bytes:
        """Run the message loop until the piece is complete; return it (the caller hashes and drops it)."""
        d = self.deadlines
        have_by = self._now() + d.have
        unchoke_by: float | None = None
        piece_by: float | None = None
        while self._queue or self._in_flight:
            if self.report.has_piece and not self._interested:
                self._send(pw.Message(pw.INTERESTED))
                self._interested = True
                unchoke_by = self._now() + d.unchoke
            if self._can_request():
                self._request_more()
                self._mark("requested")
                piece_by = piece_by or self._now() + d.piece
            deadline, phase = self._deadline(have_by, unchoke_by, piece_by)
            await self.stream.drain(deadline, phase)
            for msg in await self._messages(deadline, phase):
                self._on(msg)
        self._mark("piece")
        return b"".join(self._got[b] for b, _ in self.spec.blocks())

    def _deadline(self, have_by: float, unchoke_by: float | None, piece_by: float | None) -> tuple[float, str]:
        if piece_by is not None:
            return piece_by, "piece"
        if unchoke_by is not None:
            return unchoke_by, "unchoke"
        return have_by, "availability"

    async def _messages(self, deadline: float, phase: str) -> list[pw.Message]:
        try:
            return self.decoder.feed(await self.stream.read_some(deadline, phase))
        except pw.WireError as e:
            raise ProbeFailure(Reason.PROTOCOL, f"{phase}: {e}") from None
        except DeadlinePassed:
            raise self._phase_failure(phase) from None

    def _phase_failure(self, phase: str) -> ProbeFailure:
        if phase == "availability":
            return ProbeFailure(Reason.NO_SUCH_PIECE,
                                f"piece {self.spec.index} not advertised ({self.report.pieces_advertised or 0} are)")
        if phase == "unchoke":
            return ProbeFailure(Reason.CHOKED, "peer never unchoked us nor allowed the piece fast")
        return ProbeFailure(Reason.TIMEOUT, f"piece: {len(self._got)} of {len(self.spec.blocks())} blocks in time")

    def _can_request(self) -> bool:
        if not self.report.has_piece:
            return False
        return not self._choked or self.spec.index in self._allowed_fast

    def _request_more(self) -> None:
        depth = min(PIPELINE, (self.report.ext.reqq if self.report.ext and self.report.ext.reqq else PIPELINE))
        while self._queue and len(self._in_flight) < depth:
            begin, length = self._queue.pop(0)
            self._in_flight[begin] = length
            self._send(pw.request(self.spec.index, begin, length))

    def _requeue(self, begin: int) -> None:
        length = self._in_flight.pop(begin, None)
        if length is not None:
            self._queue.insert(0, (begin, length))

    def _on(self, msg: pw.Message) -> None:
        k = msg.kind
        if k == pw.PIECE:
            self._on_block(msg)
        elif k in (pw.BITFIELD, pw.HAVE_ALL, pw.HAVE_NONE, pw.HAVE):
            self._on_availability(msg)
        elif k == pw.CHOKE:
            self._choked = True
            if not self._fast:  # without BEP 6 a choke silently drops our pending requests
                for begin in list(self._in_flight):
                    self._requeue(begin)
        elif k == pw.UNCHOKE:
            self._choked = False
            self.report.unchoked = True
        elif k == pw.ALLOWED_FAST:
            self._allowed_fast.add(msg.index)
        elif k == pw.REJECT:
            self._on_reject(msg)
        elif k == pw.REQUEST and self._fast:
            self._send(pw.Message(pw.REJECT, index=msg.index, begin=msg.begin, length=msg.length))
        elif k == pw.EXTENDED and msg.ext_id == 0 and self.report.ext is None:
            try:
                self.report.ext = pw.parse_ext_handshake(msg.data)
            except pw.WireError as e:
                self.report.notes.append(f"bad extension handshake: {e}")

    def _on_availability(self, msg: pw.Message) -> None:
        k = msg.kind
        if k == pw.BITFIELD:
            self._advertised = pw.bitfield_pieces(msg.data, self.spec.num_pieces)
        elif k == pw.HAVE_ALL:
            self._have_all = True
        elif k == pw.HAVE_NONE:
            self._advertised, self._have_all = set(), False
        else:
            self._advertised.add(msg.index)
        if not self._have_all and self.spec.index not in self._advertised and not self._interested:
            alt = next((a for a in self._alternatives if a.index in self._advertised), None)
            if alt is not None:  # nothing requested yet: switch to a piece it has
                self.spec, self._queue = alt, alt.blocks()
        self.report.pieces_advertised = self.spec.num_pieces if self._have_all else len(self._advertised)
        self.report.has_piece = self._have_all or self.spec.index in self._advertised
        if self.report.has_piece:
            self._mark("has_piece")

    def _on_block(self, msg: pw.Message) -> None:
        expected = self._in_flight.get(msg.begin)
        if msg.index != self.spec.index or expected is None or expected != msg.length:
            self.report.notes.append(f"unrequested block {msg.index}/{msg.begin}+{msg.length} ignored")
            del self.report.notes[:-8]  # keep the report bounded
            return
        del self._in_flight[msg.begin]
        self._got[msg.begin] = msg.data
        self.report.payload_bytes += msg.length

    def _on_reject(self, msg: pw.Message) -> None:
        if msg.index != self.spec.index or msg.begin not in self._in_flight:
            return
        self._rejects += 1
        if self._rejects > MAX_REJECTS * len(self.spec.blocks()):
            raise ProbeFailure(Reason.REJECTED, f"peer rejected {self._rejects} requests")
        self._requeue(msg.begin)


@functools.cache
def _hashers() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=2, thread_name_prefix="piece-hash")  # the default one also writes files


def digests(data: bytes) -> tuple[bytes, bytes]:
    """SHA-1 (the v1 piece hash) and SHA-256 (a content fingerprint) of a piece."""
    return hashlib.sha1(data).digest(), hashlib.sha256(data).digest()


async def verify_on(session: PeerSession) -> bool:
    """Fetch and hash the piece; True when it matches. Raises ProbeFailure on anything else."""
    data = await session.fetch_piece()
    if len(data) < OFF_LOOP_BYTES:
        sha1, sha256 = digests(data)
    else:
        sha1, sha256 = await asyncio.get_running_loop().run_in_executor(_hashers(), digests, data)
    ok = sha1 == session.spec.sha1
    session.report.verified = ok
    session.report.sha256 = sha256
    return ok
