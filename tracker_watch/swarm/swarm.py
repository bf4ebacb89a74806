"""One watched swarm: its libtorrent handle, its peers, and which pieces we ask for.

Alerts for this torrent arrive through `on_*` methods (called by the engine's router); everything we
learn leaves as PeerEvents through `emit`. Connected peers are read with `get_peer_info()` shortly
after something changed (a connection opened, metadata arrived) and then every `peer_refresh_s`,
scheduled with loop timers rather than a polling loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import libtorrent as lt

from tracker_watch import log, metrics
from tracker_watch.domain.addresses import STRICT, AddressPolicy
from tracker_watch.domain.evidence import Source, utc_now_ms
from tracker_watch.domain.peers import Endpoint, PeerEvent, PeerGone, PeerListed
from tracker_watch.domain.targets import v1_piece_hashes
from tracker_watch.domain.torrents import TorrentMeta
from tracker_watch.swarm.peer_reads import PeerReads
from tracker_watch.swarm.pieces import PieceTracker
from tracker_watch.swarm.planner import PiecePlanner
from tracker_watch.swarm.sampling import Sampling, endpoint, peer_id_or_none

_log = log.get("tracker_watch.swarm")

PRIORITY_WANTED = 7
RECYCLE_DELAY_S = 2.0
# Every torrent starts with piece 0 wanted: with nothing wanted it would be "finished" the moment its
# metadata arrives, tell its peers it is upload-only, and seeds would hang up before we saw them.
INITIAL_PIECE = 0


@dataclass(frozen=True)
class SwarmSpec:
    key: str
    infohash_v1: bytes | None
    infohash_v2: bytes | None
    info: bytes | None  # raw info dict, when known: no need to fetch metadata from peers
    trackers: tuple[str, ...]
    peers: tuple[Endpoint, ...] = ()  # magnet x.pe hints: dialled (and offered to the verifier) at start


def _banned(alert: Any) -> bool:
    """A disconnect for bad data: 'peer banned' (smart-ban, silent) or 'too many corrupt pieces'."""
    try:
        reason = str(alert.error.message()).lower()
    except (AttributeError, RuntimeError):
        return False
    return "banned" in reason or "corrupt pieces" in reason


class Swarm(Sampling):
    def __init__(self, spec: SwarmSpec, handle: Any, emit: Callable[[PeerEvent], None],
                 planner_factory: Callable[[int, Callable[[int], int]], PiecePlanner],
                 refresh_s: float, loop: asyncio.AbstractEventLoop,
                 recycle: Callable[[Swarm], None] | None = None,
                 own_endpoints: set[Endpoint] | None = None, max_peers: int = 500,
                 policy: AddressPolicy = STRICT, own_ips: set[str] | None = None,
                 candidate: Callable[[str, Endpoint, int], None] | None = None,
                 reads: PeerReads | None = None) -> None:
        self.spec = spec
        self._reads = reads  # timer-driven samples read peers off the loop through it (swarm/peer_reads.py)
        # probe mode (swarm/verifier.py): dialable peers go to the verifier, and libtorrent downloads nothing
        self._candidate = candidate
        self.info_hash_v1 = spec.infohash_v1
        self._hashes: bytes | None = None
        self.key = spec.key
        self.handle = handle
        self._emit = emit
        self._planner_factory = planner_factory
        self._refresh_s = refresh_s
        self._loop = loop
        self._recycle = recycle
        self._own = own_endpoints if own_endpoints is not None else set()  # our listen sockets: never a peer
        self.max_peers = max_peers  # bounds `listed` (and so the collector's state) however large the swarm
        self.policy = policy  # which addresses we dial and record at all (domain/addresses.py)
        self._own_ips = own_ips if own_ips is not None else set()
        self.peers_refused = 0
        self.peers_forbidden = 0
        self.meta: TorrentMeta | None = None
        self.info: bytes | None = None
        self.planner: PiecePlanner | None = None
        self.pieces: PieceTracker | None = None
        self._ti: Any = None
        self._dirty = False
        self.record: dict[str, list[int]] = {}  # what each IP's data did in the hash check (see pieces.py)
        self.listed: set[Endpoint] = set()  # endpoints we gave libtorrent, or that it found through PEX
        self.connected: set[Endpoint] = set()
        self.generation = 0  # bumped each time the torrent is re-added with its payload deleted
        self._sample_at: float | None = None
        self._sample_timer: asyncio.TimerHandle | None = None
        self._recycle_timer: asyncio.TimerHandle | None = None
        self._quick_retries = 0
        self._unsampled = False  # a connection opened since the last sample, or that sample saw some pending
        # samples are numbered as they are asked: a read still in flight when a newer sample was applied (the
        # synchronous one before a recycle or a stop) is older than what the swarm shows, and is dropped
        self._sample_seq = 0
        self._applied_seq = 0
        self._opened_seq = 0  # the last sample number asked before a connection opened (see _sampled)
        self.closed = False

    # --- peers we learn of -----------------------------------------------------------------------
    def add_peer(self, peer: Endpoint, source: Source, tracker_url: str | None = None) -> None:
        """A peer named by a tracker or the DHT: record it as listed and try to connect."""
        if peer in self._own:  # our own listen sockets (the DHT's replies come here without the engine's check)
            return
        if not self.allows(peer, source):
            return
        if peer not in self.listed and len(self.listed) >= self.max_peers:
            self._refuse(peer)
            return
        self.listed.add(peer)
        now = utc_now_ms()
        self._emit(PeerListed(self.key, peer, source, now, tracker_url))
        lt_source = {Source.TRACKER: 1, Source.DHT: 2, Source.PEX: 4}.get(source, 0)
        if self._candidate is not None:
            self._candidate(self.key, peer, lt_source)
        if self.planner is not None and self.planner.dialling_peer(peer, now.date(), self._loop.time()):
            self._apply_plan()
            self._sample_at_grace_end()
        if peer not in self.connected:  # each announce of each identity lists connected peers again: a
            self.handle.connect_peer(peer, lt_source)  # no-op for libtorrent, a round trip through the GIL for us

    def allows(self, peer: Endpoint, source: Source) -> bool:
        """The address policy: a forbidden address is neither dialled nor recorded, only counted."""
        if self.policy.allows(peer[0], self._own_ips):
            return True
        self.peers_forbidden += 1
        metrics.PEERS_REFUSED.labels(source=source.value).inc()
        if self.peers_forbidden == 1 or self.peers_forbidden % 1000 == 0:
            _log.info("peer_address_forbidden", infohash=self.key, source=source.value,
                      forbidden=self.peers_forbidden)
        return False

    def _refuse(self, peer: Endpoint) -> None:
        self.peers_refused += 1
        metrics.LIMIT_HITS.labels(limit="swarm.max_peers_per_swarm").inc()
        if self.peers_refused == 1 or self.peers_refused % 1000 == 0:
            _log.warning("swarm_peer_limit", infohash=self.key, limit=self.max_peers, refused=self.peers_refused)

    def forget_listed(self) -> None:
        """Drop listed peers that are not connected (the periodic idle sweep), so new ones fit again."""
        self.listed = {p for p in self.listed if p in self.connected}

    # --- alerts ----------------------------------------------------------------------------------
    def on_peer_connect(self, alert: Any) -> None:
        self._unsampled = True
        self._opened_seq = self._sample_seq
        self.request_sample(1.0)
        if "outgoing connection" in alert.message():  # libtorrent dials endpoints we gave it, or PEX ones
            self._learned(endpoint(alert.endpoint))

    def _learned(self, peer: Endpoint) -> None:
        """An endpoint libtorrent dialled that we never gave it: a peer named it by PEX. It is listed (and a
        candidate) now, even if it hangs up before any sample: a PEX-only seeder is found that way."""
        if (peer in self.listed or peer in self._own or len(self.listed) >= self.max_peers
                or not self.policy.allows(peer[0], self._own_ips)):
            return
        self.listed.add(peer)
        self._emit(PeerListed(self.key, peer, Source.PEX, utc_now_ms()))
        if self._candidate is not None:
            self._candidate(self.key, peer, 4)

    def on_peer_disconnected(self, alert: Any) -> None:
        peer = endpoint(alert.endpoint)
        if peer in self._own:
            return  # libtorrent dialled itself (a peer told it our address); it noticed and hung up
        if not self.policy.allows(peer[0], self._own_ips):
            return  # libtorrent's IP filter keeps these out; nothing about them is recorded
        connect_failed = alert.op == lt.operation_t.connect
        peer_id = peer_id_or_none(alert.pid)  # known once the BitTorrent handshake completed
        if _banned(alert) and self.pieces is not None:
            # smart-ban sometimes drops a peer for bad data with this reason and no peer_ban_alert: judged
            # like a ban, against the peer's own record (pieces.py), never as evidence by itself
            _log.info("peer_banned_by_libtorrent", infohash=self.key, peer=f"{peer[0]}:{peer[1]}", silent=True)
            metrics.PEERS_BANNED.labels(how="disconnect").inc()
            if self.planner is not None:
                self.planner.corrupt.add(peer[0])
            self.pieces.banned(peer, peer_id)
        if connect_failed:
            self._learned(peer)  # libtorrent only dials endpoints we gave it or that peers told it about (PEX)
        self.connected.discard(peer)
        _log.debug("peer_disconnected", infohash=self.key, peer=f"{peer[0]}:{peer[1]}", reason=alert.message())
        if self.planner is not None:  # a dial that ended before the handshake (refused, uTP, MSE) lost no peer
            self.planner.peer_gone(peer, dial_failed=connect_failed or peer_id is None)
        self._emit(PeerGone(self.key, peer, utc_now_ms(), peer_id, connect_failed))

    def on_metadata(self, meta: TorrentMeta, info: bytes, ti: Any = None, hashes: Any = None) -> None:
        """`ti` and `hashes`: the handle's torrent_file() and info_hashes() when the caller holds them already
        (each is a synchronous round trip to libtorrent's network thread, with the event loop stopped)."""
        self.meta, self.info = meta, info
        # pieces as libtorrent lays them out (pad files included)
        self._ti = ti if ti is not None else self.handle.torrent_file()
        self._hashes = v1_piece_hashes(info)
        hashes = hashes if hashes is not None else self.handle.info_hashes()
        self.info_hash_v1 = self.info_hash_v1 or (bytes(hashes.v1.to_bytes()) if hashes.has_v1() else None)
        if self._candidate is None:  # session mode: libtorrent downloads the pieces the planner wants
            self.planner = self._planner_factory(int(self._ti.num_pieces()), self.piece_size)
            self.planner.wanted.add(INITIAL_PIECE)  # added with that piece wanted (see engine.watch)
        self.pieces = PieceTracker(self.key, self.piece_size, self._hashes, self._emit, self._on_settled,
                                   self._loop, record=self.record)
        self.request_sample(0.2)

    def on_block_finished(self, alert: Any) -> None:
        self._dirty = True  # payload (good or bad) is in the part file now
        if self.pieces is not None:
            self.pieces.block_finished(int(alert.piece_index), int(alert.block_index), endpoint(alert.endpoint),
                                       peer_id_or_none(alert.pid))

    def on_piece_finished(self, piece: int) -> None:
        if self.pieces is not None:
            self.read_identities()
            self.pieces.piece_finished(piece, self.handle)

    def on_hash_failed(self, piece: int) -> None:
        if self.pieces is not None:
            self.read_identities()
            self.pieces.hash_failed(piece)

    def read_identities(self) -> None:
        """Sample the connected peers before a piece settles (SETTLE_DELAY_S after it ends). A piece can complete
        before the first sample (a target registered by .torrent wants one the moment a seeder connects); reading
        its senders first gives the collector a handshake row and their client, peer id and our address, so the
        rows that credit or blame them carry all of it. Not read here and now: `get_peer_info` is a synchronous
        round trip to libtorrent's network thread, and every piece of a batch of alerts asked for its own. The
        sample runs once the batch is handled, one per swarm however many of its pieces ended."""
        self.request_sample(0.0)

    def on_read_piece(self, alert: Any) -> None:
        if self.pieces is not None:
            failed = bool(alert.error.value()) if alert.error is not None else False
            self.pieces.read_done(int(alert.piece), None if failed else bytes(alert.buffer))

    def on_peer_ban(self, alert: Any) -> None:
        # Not evidence by itself: libtorrent also bans honest peers whose trust fell because they shared
        # pieces with a liar. The piece tracker judges it against the peer's record (see pieces.py).
        peer = endpoint(alert.endpoint)
        _log.info("peer_banned_by_libtorrent", infohash=self.key, peer=f"{peer[0]}:{peer[1]}")
        metrics.PEERS_BANNED.labels(how="alert").inc()
        if self.planner is not None:  # it will not serve us any more: stop asking on its behalf
            self.planner.corrupt.add(peer[0])
        if self.pieces is not None:
            self.pieces.banned(peer, peer_id_or_none(alert.pid))

    # --- pieces ----------------------------------------------------------------------------------
    def piece_hashes(self) -> bytes | None:
        """The v1 piece hashes (20 bytes each), once metadata is known; None for v2-only torrents."""
        return self._hashes

    def piece_size(self, piece: int) -> int:
        return int(self._ti.piece_size(piece))

    def _on_settled(self, piece: int, passed: bool, contributions: tuple[Any, ...]) -> None:
        if self.planner is None or self.closed:
            return
        self.planner.settled(piece, passed, [(p, n) for p, _, n in contributions], utc_now_ms().date())
        self._apply_plan()

    def _apply_plan(self) -> None:
        if self.planner is None or self.closed:
            return
        add, drop = self.planner.plan(utc_now_ms().date(), self._loop.time())
        for piece in add:  # first want the new, then drop the old: never look upload-only in between
            self.handle.piece_priority(piece, PRIORITY_WANTED)
        for piece in drop:
            self.handle.piece_priority(piece, 0)
        if add or drop:
            _log.debug("pieces_wanted", infohash=self.key, add=sorted(add), drop=sorted(drop))
        self._schedule_recycle()

    def _schedule_recycle(self) -> None:
        """Verified pieces are not kept: once nothing is wanted, the payload is deleted with the torrent."""
        idle = self.planner is not None and not self.planner.wanted and (bool(self.planner.have) or self._dirty)
        if not idle:
            if self._recycle_timer is not None:
                self._recycle_timer.cancel()
                self._recycle_timer = None
        elif self._recycle_timer is None and self._recycle is not None:
            self._recycle_timer = self._loop.call_later(RECYCLE_DELAY_S, self._do_recycle)

    def _do_recycle(self) -> None:
        self._recycle_timer = None
        if self.closed or self.planner is None or self.planner.wanted or not (self.planner.have or self._dirty):
            return
        assert self._recycle is not None
        self._recycle(self)

    def replaced(self, handle: Any) -> None:
        """The engine re-added the torrent (payload deleted): start over with the new handle."""
        self.handle = handle
        self.generation += 1
        self._dirty = False
        self.connected.clear()
        if self.planner is not None:
            self.planner.forget_have()
            for peer in list(self.planner.peers):
                self.planner.peer_gone(peer)
        if self.meta is not None and self.info is not None:
            self.pieces = PieceTracker(self.key, self.piece_size, v1_piece_hashes(self.info), self._emit,
                                       self._on_settled, self._loop, record=self.record)

    def close(self) -> None:
        self.closed = True
        if self.pieces is not None:
            self.pieces.closed = True
        for timer in (self._sample_timer, self._recycle_timer):
            if timer is not None:
                timer.cancel()
