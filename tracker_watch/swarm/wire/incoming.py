"""Verification over a connection the peer opened to us (a peer we can reach only when it dials in).

The caller owns the listener and hands over the accepted (reader, writer) pair. The peer speaks first:
either a plain BitTorrent handshake, or MSE (we answer as the responder). Then the same session as for
our own dials: we send our handshake, advertise nothing, and verify one piece.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

from tracker_watch.domain import mse
from tracker_watch.domain import peerwire as pw
from tracker_watch.swarm.wire.client import CLIENT_NAME
from tracker_watch.swarm.wire.errors import ProbeFailure, Reason
from tracker_watch.swarm.wire.result import ProbeResult, Timeouts, default_budget, run_session
from tracker_watch.swarm.wire.session import PeerSession, PieceSpec
from tracker_watch.swarm.wire.stream import WireStream


async def verify_accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, spec: PieceSpec,
                          peer_id: bytes, *, allow_plaintext: bool = True, timeouts: Timeouts | None = None,
                          max_bytes: int | None = None, client_name: str = CLIENT_NAME,
                          alternatives: Sequence[PieceSpec] = ()) -> ProbeResult:
    """Verify `spec` (or the first of `alternatives` the peer has, if it lacks `spec`) from the peer on an
    accepted connection; closes it when done. Never raises for anything the peer does."""
    t = timeouts or Timeouts()
    result = _result(writer, spec)
    budget = max_bytes or max(default_budget(s) for s in [spec, *alternatives])
    session = PeerSession(WireStream(reader, writer, max_bytes=budget, idle=t.idle), spec, peer_id, client_name,
                          t.deadlines(), alternatives)

    async def opening() -> None:
        deadline = asyncio.get_running_loop().time() + t.handshake
        session.stream, _, encrypted = await _open(session.stream, [spec.info_hash], allow_plaintext, deadline)
        if encrypted:
            result.mse, result.encrypted = True, session.stream.encrypted
        await session.handshake(sent=False, initiator=False)

    return await _run(result, session, opening, t)


def _result(writer: asyncio.StreamWriter, spec: PieceSpec) -> ProbeResult:
    peer = writer.get_extra_info("peername") or ("?", 0)
    sock = writer.get_extra_info("sockname")
    return ProbeResult(ip=peer[0], port=peer[1], info_hash=spec.info_hash, piece_index=spec.index,
                       started_at=datetime.now(UTC), connected=True, local=(sock[0], sock[1]) if sock else None)


async def _run(result: ProbeResult, session: PeerSession, opening: Callable[[], Awaitable[None]],
               t: Timeouts) -> ProbeResult:
    """Handshakes, then the piece, within the whole verification's time; the result says how it ended."""
    try:
        async with asyncio.timeout(t.total):
            await run_session(result, session, opening)
    except TimeoutError:
        result.reason, result.detail = Reason.TIMEOUT, f"verification took longer than {t.total:g} s"
    result.attempts.append(f"incoming: {result.reason or 'verified'}")
    result.finished_at = datetime.now(UTC)
    return result


async def _open(raw: WireStream, skeys: Sequence[bytes] | mse.SkeyIndex, allow_plaintext: bool,
                deadline: float) -> tuple[WireStream, bytes, bool]:
    """The peer speaks first: a plaintext BitTorrent handshake (read whole: it names the infohash) or MSE, which
    we answer as the responder for any of `skeys`. Returns (the stream the handshake is read from — what was
    read leads it —, the infohash named, whether MSE was used)."""
    head = b""
    while len(head) < len(pw.PROTOCOL):
        head += await raw.read_raw(deadline, "handshake")
    if not head.startswith(pw.PROTOCOL):
        stream, info_hash = await _respond_any(raw, head, skeys, allow_plaintext, deadline)
        return stream, info_hash, True
    if not allow_plaintext:
        raise ProbeFailure(Reason.ENCRYPTION_REQUIRED, "peer sent a plaintext handshake; we require MSE")
    while len(head) < pw.HANDSHAKE_LEN:
        head += await raw.read_raw(deadline, "handshake")
    return raw.switched(pending=head), head[28:48], False


Choice = tuple[PieceSpec, Sequence[PieceSpec]]
INITIAL_BUDGET = 1 << 16  # bytes a peer may send before we know which torrent it means (handshakes only)


async def verify_incoming(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                          choose: Callable[[bytes], Awaitable[Choice | None]], skeys: mse.SkeyIndex,
                          peer_id: bytes, *, allow_plaintext: bool = True, timeouts: Timeouts | None = None,
                          client_name: str = CLIENT_NAME) -> ProbeResult | None:
    """Like verify_accepted, for a listener that serves many torrents: the peer's handshake (or the MSE
    shared key) names the infohash, and `choose(infohash)` gives the piece to verify and the alternatives —
    or None when we watch no such torrent or have nothing to ask of this peer today (then the connection is
    closed and None returned). `skeys` holds the infohashes an MSE handshake may name: the caller's, kept up to date
    by it (not copied per connection: at 10,000 swarms a copy and a scan of them cost more than the handshake)."""
    t = timeouts or Timeouts()
    raw = WireStream(reader, writer, max_bytes=INITIAL_BUDGET, idle=t.idle)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + t.handshake
    try:
        async with asyncio.timeout(t.total):
            stream, info_hash, encrypted = await _open(raw, skeys, allow_plaintext, deadline)
    except (ProbeFailure, TimeoutError):
        await raw.close()
        return None
    chosen = await choose(info_hash)
    if chosen is None:
        await stream.close()
        return None
    spec, alternatives = chosen
    stream.max_bytes = max(default_budget(s) for s in [spec, *alternatives])
    result = _result(writer, spec)
    result.mse = result.encrypted = encrypted and stream.encrypted
    session = PeerSession(stream, spec, peer_id, client_name, t.deadlines(), alternatives)

    async def opening() -> None:
        await session.handshake(sent=False, initiator=False)

    return await _run(result, session, opening, t)


async def _respond_any(raw: WireStream, head: bytes, skeys: Sequence[bytes] | mse.SkeyIndex, allow_plaintext: bool,
                       deadline: float) -> tuple[WireStream, bytes]:
    """The MSE responder over every torrent we serve; returns the encrypted stream and the infohash it named."""
    allow = mse.CRYPTO_RC4 | (mse.CRYPTO_PLAINTEXT if allow_plaintext else 0)
    resp = mse.Responder(skeys, allow)
    try:
        resp.feed(head)
        while not resp.done:
            if out := resp.take_output():
                raw.write(out)
                await raw.drain(deadline, "encryption")
            resp.feed(await raw.read_raw(deadline, "encryption"))
    except mse.MSEError as e:
        raise ProbeFailure(Reason.ENCRYPTION_FAILED, f"encryption: {e}") from None
    raw.write(resp.take_output())  # our VC and crypto selection, before anything of the payload stream
    # their initial payload (normally their handshake) was inside the MSE exchange; it leads the stream
    stream = raw.switched(pending=resp.ia + resp.payload, encrypt=resp.encrypt, decrypt=resp.decrypt)
    return stream, resp.skey
