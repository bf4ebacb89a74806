"""Who supplied each piece, and whether the piece really is the work: attribution and read-back hashing.

libtorrent names the sender of each block (`block_finished_alert`, posted after the disk write, so it
can arrive after `piece_finished_alert`) and the piece that failed its check (`hash_failed_alert`, which
names no peer). We keep the block → peer map, wait a moment after a piece completes, read the piece
back and hash it ourselves: a piece counts as verified only when libtorrent's check passed *and* our
SHA-1 equals the piece hash in the info dictionary (v1 and hybrid torrents; v2-only torrents rely on
libtorrent's SHA-256 Merkle check, and we record the piece's SHA-256).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tracker_watch import log
from tracker_watch.domain.evidence import utc_now_ms
from tracker_watch.domain.peers import Endpoint, PeerEvent, PeerLied, PieceSettled

_log = log.get("tracker_watch.swarm")
BLOCK = 16384
SETTLE_DELAY_S = 0.5
MAX_SETTLE_WAITS = 20  # × SETTLE_DELAY_S for the read-back to arrive

Contribution = tuple[Endpoint, bytes | None, int]
SettledCallback = Callable[[int, bool, tuple[Contribution, ...]], None]


@dataclass
class _Attempt:
    passed: bool
    blocks: dict[int, tuple[Endpoint, bytes | None]] = field(default_factory=dict)


class PieceTracker:
    """Per piece: the blocks of the attempt in progress, and of the attempt that just ended (if any).

    Attempts are told apart by completeness: an ended attempt had every block of the piece, so a
    block_finished for a block it lacks is its own late alert, while one for a block it already has
    belongs to the next attempt (libtorrent re-downloads a failed piece at once). Blame for a failed
    piece needs the complete picture; credit for a passed one does not.
    """

    def __init__(self, key: str, piece_size: Callable[[int], int], v1_hashes: bytes | None,
                 emit: Callable[[PeerEvent], None], on_settled: SettledCallback,
                 loop: asyncio.AbstractEventLoop, max_waits: int = MAX_SETTLE_WAITS,
                 record: dict[str, list[int]] | None = None) -> None:
        self.key = key
        self.max_waits = max_waits
        self.piece_size = piece_size
        self.v1_hashes = v1_hashes
        self._emit = emit
        self._on_settled = on_settled
        self._loop = loop
        self._current: dict[int, dict[int, tuple[Endpoint, bytes | None]]] = {}
        self._ended: dict[int, _Attempt] = {}
        self._reads: dict[int, tuple[bytes, bytes] | None] = {}
        # IP → [pieces passed with its data, pieces failed with its data]; outlives payload deletion
        self.record: dict[str, list[int]] = {} if record is None else record
        self.closed = False

    def blocks_in(self, piece: int) -> int:
        return -(-self.piece_size(piece) // BLOCK)

    def block_finished(self, piece: int, block: int, peer: Endpoint, pid: bytes | None) -> None:
        ended = self._ended.get(piece)
        if ended is not None and block not in ended.blocks:
            ended.blocks[block] = (peer, pid)
        else:
            self._current.setdefault(piece, {})[block] = (peer, pid)

    def piece_finished(self, piece: int, handle: Any) -> None:
        handle.read_piece(piece)
        self._end(piece, passed=True)

    def hash_failed(self, piece: int) -> None:
        self._end(piece, passed=False)

    def read_done(self, piece: int, data: bytes | None) -> None:
        self._reads[piece] = None if data is None else (hashlib.sha1(data).digest(), hashlib.sha256(data).digest())

    def _end(self, piece: int, passed: bool) -> None:
        if piece in self._ended:  # the previous attempt has not settled yet: settle it with what we know
            self._settle(piece, self.max_waits)
        self._ended[piece] = _Attempt(passed, self._current.pop(piece, {}))
        self._loop.call_later(SETTLE_DELAY_S, self._settle, piece, 0)

    def _settle(self, piece: int, waits: int) -> None:
        attempt = self._ended.get(piece)
        if self.closed or attempt is None:
            return
        complete = len(attempt.blocks) >= self.blocks_in(piece)
        waiting = not complete or (attempt.passed and piece not in self._reads)
        if waiting and waits < self.max_waits:
            self._loop.call_later(SETTLE_DELAY_S, self._settle, piece, waits + 1)
            return
        del self._ended[piece]
        for ip in {peer[0] for peer, _ in attempt.blocks.values()}:
            self.record.setdefault(ip, [0, 0])[0 if attempt.passed else 1] += 1
        contributions = self._contributions(piece, attempt.blocks)
        if not attempt.passed:
            if not complete:  # never blame on a partial picture
                _log.warning("failed_piece_unattributed", infohash=self.key, piece=piece)
                contributions = ()
            self._emit(PieceSettled(self.key, piece, False, utc_now_ms(), contributions))
            self._on_settled(piece, False, contributions)
            return
        hashes = self._reads.pop(piece, None)
        expected = self.v1_hashes[piece * 20:piece * 20 + 20] if self.v1_hashes else None
        if hashes is None or (expected is not None and hashes[0] != expected):
            # libtorrent's check passed but we cannot confirm it: claim nothing about anyone
            _log.error("piece_not_confirmed", infohash=self.key, piece=piece, read=hashes is not None)
            self._on_settled(piece, True, ())
            return
        self._emit(PieceSettled(self.key, piece, True, utc_now_ms(), contributions, hashes[0], hashes[1]))
        self._on_settled(piece, True, contributions)

    def banned(self, peer: Endpoint, pid: bytes | None) -> None:
        """libtorrent banned the peer after hash failures. Its own reason may be guilt by association (trust
        points fall for every peer in a failed piece), so judge once the pieces in flight have settled."""
        self._loop.call_later(SETTLE_DELAY_S * (self.max_waits + 2), self._judge, peer, pid)

    def _judge(self, peer: Endpoint, pid: bytes | None) -> None:
        passed, failed = self.record.get(peer[0], [0, 0])
        if self.closed:
            return
        if failed and not passed:
            self._emit(PeerLied(self.key, peer, utc_now_ms(), pid))
        else:
            _log.info("ban_not_evidence", infohash=self.key, peer=f"{peer[0]}:{peer[1]}", passed=passed,
                      failed=failed)

    def _contributions(self, piece: int, blocks: dict[int, tuple[Endpoint, bytes | None]]) -> tuple[
            Contribution, ...]:
        size = self.piece_size(piece)
        per_peer: dict[Endpoint, list[Any]] = {}
        for block, (peer, pid) in blocks.items():
            entry = per_peer.setdefault(peer, [pid, 0])
            entry[0] = entry[0] or pid
            entry[1] += max(min(BLOCK, size - block * BLOCK), 0)
        return tuple((peer, pid, nbytes) for peer, (pid, nbytes) in per_peer.items())
