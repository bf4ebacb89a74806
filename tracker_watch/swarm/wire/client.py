"""probe(): dial one peer ourselves and verify one piece from it, over that single TCP connection.

Encryption: 'require' offers MSE with RC4 only; 'prefer' offers MSE (RC4 or plaintext, the peer picks) and
dials again with a plain handshake if the peer does not speak MSE; 'plaintext' sends a plain handshake.
Every phase has a deadline, the whole probe has one more, and the bytes we accept are capped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Literal

from tracker_watch.domain import mse
from tracker_watch.swarm.wire.errors import ProbeFailure, Reason
from tracker_watch.swarm.wire.result import ProbeResult, Timeouts, default_budget, run_session
from tracker_watch.swarm.wire.session import PeerSession, PieceSpec
from tracker_watch.swarm.wire.stream import WireStream

__all__ = ["ProbeResult", "Timeouts", "probe"]

Encryption = Literal["prefer", "require", "plaintext"]
CLIENT_NAME = "tracker-watch/0.1"
_MODES: dict[str, tuple[str, ...]] = {"require": ("rc4",), "prefer": ("mse", "plain"), "plaintext": ("plain",)}


async def probe(ip: str, port: int, infohash: bytes, peer_id: bytes, piece_index: int, piece_length: int,
                expected_hash: bytes, *, num_pieces: int, local_ip: str | None = None,
                encryption: Encryption = "prefer", timeouts: Timeouts | None = None, max_bytes: int | None = None,
                client_name: str = CLIENT_NAME, alternatives: Sequence[tuple[int, int, bytes]] = ()) -> ProbeResult:
    """Verify piece `piece_index` (of `piece_length` bytes: that piece's own size) from the peer at ip:port.

    `alternatives`: (index, size, sha1) of other pieces to verify instead, first one it has, when the
    peer's bitfield lacks `piece_index` (a partial seeder); `result.piece_index` says which was verified.

    Never raises for anything the peer does; the result says how far it got and why it stopped."""
    if len(peer_id) != 20 or encryption not in _MODES:
        raise ValueError("peer_id must be 20 bytes and encryption one of prefer, require, plaintext")
    spec = PieceSpec(info_hash=infohash, num_pieces=num_pieces, index=piece_index, size=piece_length,
                     sha1=expected_hash)
    others = [PieceSpec(infohash, num_pieces, i, size, digest) for i, size, digest in alternatives]
    t = timeouts or Timeouts()
    budget = max_bytes or max(default_budget(s) for s in [spec, *others])
    result = ProbeResult(ip=ip, port=port, info_hash=infohash, piece_index=piece_index,
                         started_at=datetime.now(UTC))
    modes = _MODES[encryption]
    try:
        async with asyncio.timeout(t.total):
            for n, mode in enumerate(modes):
                await _attempt(result, mode, spec, others, peer_id, local_ip, t, budget, client_name)
                result.attempts.append(f"{mode}: {result.reason or 'verified'}")
                if result.reason is not Reason.ENCRYPTION_FAILED or n == len(modes) - 1:
                    break
    except TimeoutError:
        result.reason, result.detail = Reason.TIMEOUT, f"probe took longer than {t.total:g} s"
    result.finished_at = datetime.now(UTC)
    return result


async def _attempt(result: ProbeResult, mode: str, spec: PieceSpec, others: list[PieceSpec], peer_id: bytes,
                   local_ip: str | None, t: Timeouts, budget: int, client_name: str) -> None:
    result.reason, result.detail, result.verified = None, "", None
    try:
        reader, writer = await _connect(result.ip, result.port, local_ip, t.connect)
    except ProbeFailure as f:
        result.reason, result.detail = f.reason, f.detail
        return
    result.connected = True
    sock = writer.get_extra_info("sockname")
    result.local = (sock[0], sock[1]) if sock else None
    session = PeerSession(WireStream(reader, writer, max_bytes=budget, idle=t.idle), spec, peer_id, client_name,
                          t.deadlines(), others)

    async def opening() -> None:
        if mode == "plain":
            await _plain_handshake(session)
            return
        provide = mse.CRYPTO_RC4 if mode == "rc4" else mse.CRYPTO_RC4 | mse.CRYPTO_PLAINTEXT
        session.stream = await _negotiate(session.stream, spec, provide, session.our_handshake(), t.handshake)
        result.mse, result.encrypted = True, session.stream.encrypted
        await session.handshake(sent=True)

    await run_session(result, session, opening)


async def _connect(ip: str, port: int, local_ip: str | None,
                   timeout: float) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    try:
        async with asyncio.timeout(timeout):  # not wait_for, which can swallow the probe's total deadline (3.11)
            return await asyncio.open_connection(ip, port, local_addr=(local_ip, 0) if local_ip else None)
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
            raise ProbeFailure(Reason.HANDSHAKE_REFUSED, "peer closed our plaintext handshake unanswered (it may "
                               "require encryption, not serve this torrent, or already hold a connection from "
                               "our address)") from None
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
    return raw.switched(pending=ini.payload, encrypt=ini.encrypt, decrypt=ini.decrypt)
