"""Peer events → observations: per (swarm, peer) state, and the rules for when a sighting is worth a row.

No I/O: observations leave through `sink`. A row is written when a peer first appears, when the
grade of what we saw rises, when what it advertises changes (at most once per `change_gap_s`), and
otherwise every `reobserve_s` while it stays around — so the ledger shows presence over time without
a row per refresh. Every row goes to each target (rights holder's registration) of the swarm.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from tracker_watch import log
from tracker_watch.domain.evidence import Grade, Observation, Source, source_from_lt_bits
from tracker_watch.domain.peers import (
    Endpoint,
    PeerEvent,
    PeerGone,
    PeerLied,
    PeerListed,
    PeerSnapshot,
    PieceSettled,
)

_log = log.get("tracker_watch.evidence")
PieceFacts = tuple[int, int, bytes | None, bytes | None]  # (piece index, bytes from this peer, SHA-1, SHA-256)


@dataclass(frozen=True)
class TargetRef:
    target_id: int
    infohash_v1: bytes | None
    infohash_v2: bytes | None


@dataclass
class PeerState:
    source: Source
    tracker_url: str | None = None
    peer_id: bytes | None = None
    client: str | None = None
    pieces_advertised: int | None = None
    num_pieces: int | None = None
    pieces_verified: int = 0
    bytes_verified: int = 0
    local: Endpoint | None = None
    best: Grade | None = None
    last_emit: datetime | None = None
    last_signature: tuple[object, ...] = ()
    last_activity: datetime | None = None
    verified_pieces: set[int] = field(default_factory=set)


class Collector:
    def __init__(self, node: str, version: str, sink: Callable[[Observation], None],
                 reobserve_s: float = 900.0, change_gap_s: float = 60.0) -> None:
        self.node = node
        self.version = version
        self.sink = sink
        self.reobserve = timedelta(seconds=reobserve_s)
        self.change_gap = timedelta(seconds=change_gap_s)
        self.targets: dict[str, list[TargetRef]] = {}
        # swarm → peer → state: a swarm that stops drops its own peers in O(1), not by a scan of every swarm's
        # (a mass stop of 5,000 swarms was quadratic)
        self.peers: dict[str, dict[Endpoint, PeerState]] = {}
        self.emitted = 0

    def set_targets(self, swarm: str, targets: list[TargetRef]) -> None:
        if targets:
            self.targets[swarm] = targets
        else:
            self.targets.pop(swarm, None)
            self.peers.pop(swarm, None)

    def handle(self, event: PeerEvent) -> None:
        if event.swarm not in self.targets:
            return
        if isinstance(event, PeerListed):
            self._listed(event)
        elif isinstance(event, PeerSnapshot):
            self._snapshot(event)
        elif isinstance(event, PeerGone):
            self._gone(event)
        elif isinstance(event, PieceSettled):
            self._settled(event)
        elif isinstance(event, PeerLied):
            _log.warning("peer_corrupt", infohash=event.swarm, peer=f"{event.peer[0]}:{event.peer[1]}",
                         reason="banned for hash failures; no piece with its data ever passed")
            st = self._state(event.swarm, event.peer, Source.PEX)
            st.peer_id = st.peer_id or event.peer_id
            self._emit(event.swarm, event.peer, st, Grade.CORRUPT, event.at, force=True)

    # --- event kinds -----------------------------------------------------------------------------
    def _listed(self, e: PeerListed) -> None:
        st = self._state(e.swarm, e.peer, e.source)
        if st.tracker_url is None and e.source is Source.TRACKER:
            st.tracker_url = e.tracker_url
        self._emit(e.swarm, e.peer, st, Grade.LISTED, e.at)

    def _snapshot(self, e: PeerSnapshot) -> None:
        st = self._state(e.swarm, e.peer, source_from_lt_bits(e.source_bits, e.incoming))
        st.peer_id = e.peer_id or st.peer_id
        st.client = e.client or st.client
        st.pieces_advertised = e.pieces_advertised
        st.num_pieces = e.num_pieces
        st.local = e.local or st.local
        grade = Grade.ADVERTISED if e.pieces_advertised else Grade.HANDSHAKE
        self._emit(e.swarm, e.peer, st, grade, e.at)

    def _gone(self, e: PeerGone) -> None:
        if e.peer_id is None:
            return  # no handshake: nothing beyond what PeerListed already said
        st = self._state(e.swarm, e.peer, Source.INCOMING)
        st.peer_id = st.peer_id or e.peer_id
        if st.best is None or not st.best.at_least(Grade.HANDSHAKE):
            self._emit(e.swarm, e.peer, st, Grade.HANDSHAKE, e.at)

    def _settled(self, e: PieceSettled) -> None:
        if not e.passed:
            # only a sole sender is to blame: a liar poisons pieces that honest peers helped fill
            if len(e.contributions) == 1:
                peer, pid, nbytes = e.contributions[0]
                _log.warning("peer_corrupt", infohash=e.swarm, peer=f"{peer[0]}:{peer[1]}", piece=e.piece,
                             reason="sole sender of a piece that failed the hash check")
                st = self._state(e.swarm, peer, Source.PEX)
                st.peer_id = st.peer_id or pid
                self._emit(e.swarm, peer, st, Grade.CORRUPT, e.at, force=True, piece=(e.piece, nbytes, None, None))
            else:
                _log.info("piece_failed_shared", infohash=e.swarm, piece=e.piece,
                          contributors=len(e.contributions))
            return
        for peer, pid, nbytes in e.contributions:
            st = self._state(e.swarm, peer, Source.PEX)
            st.peer_id = st.peer_id or pid
            if e.piece in st.verified_pieces:
                continue
            if st.best is None or st.best.rank < Grade.HANDSHAKE.rank:
                # blocks only flow over a completed handshake: say so first, should no snapshot have caught it
                self._emit(e.swarm, peer, st, Grade.HANDSHAKE, e.at)
            st.verified_pieces.add(e.piece)
            st.pieces_verified += 1
            st.bytes_verified += nbytes
            self._emit(e.swarm, peer, st, Grade.VERIFIED, e.at, force=True, piece=(e.piece, nbytes, e.sha1, e.sha256))

    # --- state and emission ----------------------------------------------------------------------
    def _state(self, swarm: str, peer: Endpoint, source: Source) -> PeerState:
        peers = self.peers.get(swarm)
        if peers is None:
            peers = self.peers[swarm] = {}
        st = peers.get(peer)
        if st is None:
            st = peers[peer] = PeerState(source=source)
        return st

    def _emit(self, swarm: str, peer: Endpoint, st: PeerState, grade: Grade, at: datetime,
              force: bool = False, piece: PieceFacts | None = None) -> None:
        st.last_activity = at
        signature = (grade, st.pieces_advertised, st.client, st.pieces_verified)
        rises = st.best is None or grade.rank > st.best.rank
        due = st.last_emit is None or at - st.last_emit >= self.reobserve
        changed = signature != st.last_signature and (st.last_emit is None or at - st.last_emit >= self.change_gap)
        if not (force or rises or due or (changed and grade is not Grade.LISTED)):
            return
        if st.best is None or grade.rank > st.best.rank:
            st.best = grade
        st.last_emit, st.last_signature = at, signature
        for t in self.targets.get(swarm, ()):
            self.sink(Observation(
                target_id=t.target_id, infohash_v1=t.infohash_v1, infohash_v2=t.infohash_v2, observed_at=at,
                ip=peer[0], port=peer[1], source=st.source, grade=grade, node=self.node, version=self.version,
                tracker_url=st.tracker_url, peer_id=st.peer_id, client=st.client,
                pieces_advertised=st.pieces_advertised, num_pieces=st.num_pieces,
                pieces_verified=st.pieces_verified, bytes_verified=st.bytes_verified,
                our_ip=st.local[0] if st.local else None, our_port=st.local[1] if st.local else None,
                piece_index=piece[0] if piece else None, piece_bytes=piece[1] if piece else None,
                piece_sha1=piece[2] if piece else None, piece_sha256=piece[3] if piece else None))
            self.emitted += 1

    def evict_idle(self, now: datetime) -> int:
        """Forget peers silent for two re-observation periods (bounded memory on large swarms)."""
        horizon = now - 2 * self.reobserve
        evicted = 0
        for swarm, peers in list(self.peers.items()):
            stale = [k for k, st in peers.items() if st.last_activity is not None and st.last_activity < horizon]
            for k in stale:
                del peers[k]
            evicted += len(stale)
            if not peers:
                del self.peers[swarm]
        return evicted
