"""probe(): dial one peer ourselves and verify one piece from it, over that single TCP connection.

Encryption: 'require' offers MSE with RC4 only; 'prefer' offers MSE (RC4 or plaintext, the peer picks) and
dials again with a plain handshake if the peer does not speak MSE; 'plaintext' sends a plain handshake.
Every phase has a deadline, the whole probe has one more, and the bytes we accept are capped.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from tracker_watch.domain import mse
from tracker_watch.domain import peerwire as pw
from tracker_watch.swarm.wire.errors import ProbeFailure, Reason
from tracker_watch.swarm.wire.session import Deadlines, PeerSession, PieceSpec, verify_on
from tracker_watch.swarm.wire.stream import WireStream

Encryption = Literal["prefer", "require", "plaintext"]
CLIENT_NAME = "tracker-watch/0.1"
_MODES: dict[str, tuple[str, ...]] = {"require": ("rc4",), "prefer": ("mse", "plain"), "plaintext": ("plain",)}


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
    reason: Reason | None = None          # None when verified
    detail: str = ""
    attempts: list[str] = field(default_factory=list)


async def probe(ip: str, port: int, infohash: bytes, peer_id: bytes, piece_index: int, piece_length: int,
                expected_hash: bytes, *, num_pieces: int, local_ip: str | None = None,
                encryption: Encryption = "prefer", timeouts: Timeouts | None = None, max_bytes: int | None = None,
                client_name: str = CLIENT_NAME) -> ProbeResult:
    """Verify piece `piece_index` (of `piece_length` bytes: that piece's own size) from the peer at ip:port.

    Never raises for anything the peer does; the result says how far it got and why it stopped."""
    spec = PieceSpec(info_hash=infohash, num_pieces=num_pieces, index=piece_index, size=piece_length,
                     sha1=expected_hash)
    t = timeouts or Timeouts()
    budget = max_bytes or 2 * piece_length + pw.bitfield_len(num_pieces) + 256 * 1024
    result = ProbeResult(ip=ip, port=port, info_hash=infohash, piece_index=piece_index,
                         started_at=datetime.now(UTC))
    modes = _MODES[encryption]
    try:
        async with asyncio.timeout(t.total):
            for n, mode in enumerate(modes):
                await _attempt(result, mode, spec, peer_id, local_ip, t, budget, client_name)
                result.attempts.append(f"{mode}: {result.reason or 'verified'}")
                if result.reason is not Reason.ENCRYPTION_FAILED or n == len(modes) - 1:
                    break
    except TimeoutError:
        result.reason, result.detail = Reason.TIMEOUT, f"probe took longer than {t.total:g} s"
    result.finished_at = datetime.now(UTC)
    return result


async def _attempt(result: ProbeResult, mode: str, spec: PieceSpec, peer_id: bytes, local_ip: str | None,
                   t: Timeouts, budget: int, client_name: str) -> None:
    result.reason, result.detail, result.verified = None, "", None
    try:
        reader, writer = await _connect(result.ip, result.port, local_ip, t.connect)
    except ProbeFailure as f:
        result.reason, result.detail = f.reason, f.detail
        return
    result.connected = True
    sock = writer.get_extra_info("sockname")
    result.local = (sock[0], sock[1]) if sock else None
    stream = WireStream(reader, writer, max_bytes=budget, idle=t.idle)
    session: PeerSession | None = None
    try:
        session = PeerSession(stream, spec, peer_id, client_name, t.deadlines())
        if mode == "plain":
            stream = session.stream
            await _plain_handshake(session)
        else:
            provide = mse.CRYPTO_RC4 if mode == "rc4" else mse.CRYPTO_RC4 | mse.CRYPTO_PLAINTEXT
            stream = session.stream = await _negotiate(stream, spec, provide, session.our_handshake(), t.handshake)
            result.mse, result.encrypted = True, stream.encrypted
            await session.handshake(sent=True)
        await verify_on(session)
    except ProbeFailure as f:
        result.reason, result.detail = f.reason, f.detail
    finally:
        await stream.close()
        if session is not None:
            _fill(result, session, stream)


async def _connect(ip: str, port: int, local_ip: str | None,
                   timeout: float) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    try:
        return await asyncio.wait_for(
            asyncio.open_connection(ip, port, local_addr=(local_ip, 0) if local_ip else None), timeout)
    except ConnectionRefusedError:
        raise ProbeFailure(Reason.REFUSED, f"connection to {ip}:{port} refused") from None
    except TimeoutError:
        raise ProbeFailure(Reason.TIMEOUT, f"connect: no answer in {timeout:g} s") from None
    except OSError as e:
        raise ProbeFailure(Reason.UNREACHABLE, f"connect: {e.strerror or e}") from None


async def _plain_handshake(session: PeerSession) -> None:
    try:
        await session.handshake(sent=False)
    except ProbeFailure as f:
        if f.reason is Reason.CLOSED and session.stream.bytes_in == 0:
            raise ProbeFailure(Reason.ENCRYPTION_REQUIRED, "peer closed our plaintext handshake unanswered "
                                                           "(it likely requires encryption)") from None
        raise


async def _negotiate(raw: WireStream, spec: PieceSpec, provide: int, ia: bytes, timeout: float) -> WireStream:
    """The MSE initiator over the raw socket; our BT handshake rides inside as the initial payload."""
    deadline = asyncio.get_running_loop().time() + timeout
    ini = mse.Initiator(spec.info_hash, provide, ia)
    try:
        raw.write(ini.take_output())
        while not ini.done:
            ini.feed(await raw.read_raw(deadline, "encryption"))
            if out := ini.take_output():
                raw.write(out)
            await raw.drain(deadline, "encryption")
    except mse.MSEError as e:
        raise ProbeFailure(Reason.ENCRYPTION_FAILED, f"encryption: {e}") from None
    except ProbeFailure as f:
        if f.reason is Reason.TOO_MUCH_DATA:
            raise
        raise ProbeFailure(Reason.ENCRYPTION_FAILED, f"{f.detail} (peer may not speak MSE)") from None
    stream = WireStream(raw.reader, raw.writer, max_bytes=raw.max_bytes, idle=raw.idle, encrypt=ini.encrypt,
                        decrypt=ini.decrypt, pending=ini.payload, bytes_in=raw.bytes_in)
    stream.bytes_out = raw.bytes_out
    return stream


def _fill(result: ProbeResult, session: PeerSession, stream: WireStream) -> None:
    r = session.report
    result.bytes_received, result.bytes_sent = stream.bytes_in, stream.bytes_out
    result.payload_bytes, result.verified = r.payload_bytes, r.verified
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
