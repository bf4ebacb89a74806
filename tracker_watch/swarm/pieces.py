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
from typing import Any

from tracker_watch import log
from tracker_watch.domain.evidence import utc_now_ms
from tracker_watch.domain.peers import Endpoint, PeerEvent, PieceSettled
from tracker_watch.domain.targets import TorrentMeta

_log = log.get("tracker_watch.swarm")
BLOCK = 16384
SETTLE_DELAY_S = 0.5
MAX_SETTLE_WAITS = 20  # × SETTLE_DELAY_S for the read-back to arrive

Contribution = tuple[Endpoint, bytes | None, int]
SettledCallback = Callable[[int, bool, tuple[Contribution, ...]], None]


class PieceTracker:
    def __init__(self, key: str, meta: TorrentMeta, v1_hashes: bytes | None, emit: Callable[[PeerEvent], None],
                 on_settled: SettledCallback, loop: asyncio.AbstractEventLoop) -> None:
        self.key = key
        self.meta = meta
        self.v1_hashes = v1_hashes
        self._emit = emit
        self._on_settled = on_settled
        self._loop = loop
        self._blocks: dict[int, dict[int, tuple[Endpoint, bytes | None]]] = {}
        self._reads: dict[int, tuple[bytes, bytes] | None] = {}
        self.closed = False

    def piece_size(self, piece: int) -> int:
        m = self.meta
        if piece < m.num_pieces - 1:
            return m.piece_length
        return m.total_size - m.piece_length * (m.num_pieces - 1) or m.piece_length

    def block_finished(self, piece: int, block: int, peer: Endpoint, pid: bytes | None) -> None:
        self._blocks.setdefault(piece, {})[block] = (peer, pid)

    def piece_finished(self, piece: int, handle: Any) -> None:
        handle.read_piece(piece)
        self._loop.call_later(SETTLE_DELAY_S, self._settle, piece, True, 0)

    def hash_failed(self, piece: int) -> None:
        self._loop.call_later(SETTLE_DELAY_S, self._settle, piece, False, 0)

    def read_done(self, piece: int, data: bytes | None) -> None:
        self._reads[piece] = None if data is None else (hashlib.sha1(data).digest(), hashlib.sha256(data).digest())

    def _settle(self, piece: int, passed: bool, waits: int) -> None:
        if self.closed:
            return
        if passed and piece not in self._reads and waits < MAX_SETTLE_WAITS:
            self._loop.call_later(SETTLE_DELAY_S, self._settle, piece, True, waits + 1)
            return
        contributions = self._contributions(piece)
        if not passed:
            self._emit(PieceSettled(self.key, piece, False, utc_now_ms(), contributions))
            self._on_settled(piece, False, contributions)
            return
        hashes = self._reads.pop(piece, None)
        expected = self.v1_hashes[piece * 20:piece * 20 + 20] if self.v1_hashes else None
        if hashes is None or (expected is not None and hashes[0] != expected):
            # libtorrent's check passed but we cannot confirm it: claim nothing against anyone
            _log.error("piece_not_confirmed", infohash=self.key, piece=piece, read=hashes is not None)
            self._on_settled(piece, True, ())
            return
        self._emit(PieceSettled(self.key, piece, True, utc_now_ms(), contributions, hashes[0], hashes[1]))
        self._on_settled(piece, True, contributions)

    def _contributions(self, piece: int) -> tuple[Contribution, ...]:
        size = self.piece_size(piece)
        per_peer: dict[Endpoint, list[Any]] = {}
        for block, (peer, pid) in self._blocks.pop(piece, {}).items():
            entry = per_peer.setdefault(peer, [pid, 0])
            entry[0] = entry[0] or pid
            entry[1] += max(min(BLOCK, size - block * BLOCK), 0)
        return tuple((peer, pid, nbytes) for peer, (pid, nbytes) in per_peer.items())
