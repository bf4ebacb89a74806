"""A swarm's samples of its connected peers (the Swarm's sampling half, swarm/swarm.py).

One sample timer per swarm (the earliest request wins). A timer-driven sample reads the peer list off the loop
(swarm/peer_reads.py) and applies it back on the loop if it is still current; the synchronous `sample_now` is kept
for the moments the swarm is about to lose its handle (a recycle, a stop).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import libtorrent as lt

from tracker_watch.domain.evidence import Source, normalize_ip, utc_now_ms
from tracker_watch.domain.peers import Endpoint, PeerEvent, PeerSnapshot
from tracker_watch.domain.torrents import TorrentMeta
from tracker_watch.swarm.peer_reads import PeerReads
from tracker_watch.swarm.planner import PiecePlanner

_CONNECTING = int(lt.peer_info.connecting)
_HANDSHAKE = int(lt.peer_info.handshake)
_OUTGOING = int(lt.peer_info.local_connection)
GRACE_MARGIN_S = 0.05  # a sample this long after a dial grace ends finds it over


def endpoint(value: Any) -> Endpoint:
    return normalize_ip(str(value[0])), int(value[1])


def _text(value: Any) -> str | None:
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return text or None


def peer_id_or_none(pid: Any) -> bytes | None:
    raw = bytes(pid.to_bytes())
    return raw if any(raw) else None


class Sampling:
    # set by Swarm.__init__
    key: str
    handle: Any
    generation: int
    closed: bool
    connected: set[Endpoint]
    meta: TorrentMeta | None
    planner: PiecePlanner | None
    _loop: asyncio.AbstractEventLoop
    _emit: Callable[[PeerEvent], None]
    _candidate: Callable[[str, Endpoint, int], None] | None
    _refresh_s: float
    _reads: PeerReads | None
    _sample_at: float | None
    _sample_timer: asyncio.TimerHandle | None
    _quick_retries: int
    _unsampled: bool
    _sample_seq: int
    _applied_seq: int
    _opened_seq: int

    def allows(self, peer: Endpoint, source: Source) -> bool:
        raise NotImplementedError

    def _apply_plan(self) -> None:
        raise NotImplementedError

    def request_sample(self, delay: float) -> None:
        if self.closed:
            return
        due = self._loop.time() + delay
        if self._sample_at is not None and self._sample_at <= due:
            return
        if self._sample_timer is not None:
            self._sample_timer.cancel()
        self._sample_at = due
        self._sample_timer = self._loop.call_at(due, self._sample)

    def _sample(self) -> None:
        self._sample_at = self._sample_timer = None
        if self.closed:
            return
        if self._reads is None:
            self._after_sample(self.sample_now())
            return
        self._sample_seq += 1
        seq, generation, handle = self._sample_seq, self.generation, self.handle
        self._reads.read(handle, lambda peers: self._sampled(seq, generation, handle, peers))

    def _sampled(self, seq: int, generation: int, handle: Any, peers: list[Any] | None) -> None:
        """A peer list read in the worker thread, back on the loop."""
        if self.closed:
            return
        if generation != self.generation or handle is not self.handle or seq <= self._applied_seq or peers is None:
            # stale (re-added, or a newer sample applied meanwhile) or unreadable: the swarm's state stays as it
            # is, and a fresh sample keeps the timer chain that this one would have continued
            self.request_sample(0.0 if peers is not None else 2.0)
            return
        self._applied_seq = seq
        # a connection that opened after this read was asked may be missing from it: still unsampled
        opened_since = self._opened_seq >= seq
        pending = self._apply_peers(peers)
        self._unsampled = pending or opened_since
        self._after_sample(pending)

    def _after_sample(self, pending: bool) -> None:
        if pending and self._quick_retries < 10:
            self._quick_retries += 1
            self.request_sample(2.0)
        else:
            self._quick_retries = 0
            if self.connected:
                self.request_sample(self._refresh_s)
        self._sample_at_grace_end()

    def _sample_at_grace_end(self) -> None:
        """Re-plan when the next dial grace ends, so that the piece wanted for a peer that never answered is
        unwanted then. There is one sample timer (the earliest request wins): asking only when a dial began lost
        the request whenever a sample was due sooner, and with nobody connected no later sample came, so the
        piece stayed wanted (and the payload kept) until some other event."""
        if self.planner is not None and self.planner.dialling:
            end = min(self.planner.dialling.values())
            self.request_sample(max(0.0, end - self._loop.time()) + GRACE_MARGIN_S)

    def sample_now(self) -> bool:
        """Read connected peers into snapshots, here and now (a round trip to libtorrent's network thread, on
        the loop: only where the swarm is about to lose its handle); True if some are still connecting or
        handshaking."""
        self._sample_seq += 1
        self._applied_seq = self._sample_seq
        pending = self._apply_peers(self.handle.get_peer_info())
        self._unsampled = pending
        return pending

    def _apply_peers(self, peers: list[Any]) -> bool:
        """Connected peers into snapshots and the planner; True if some are still connecting or handshaking."""
        now = utc_now_ms()
        today = now.date()
        pending = False
        num_pieces = self.meta.num_pieces if self.meta else None
        connected: set[Endpoint] = set()
        for pi in peers:
            flags = int(pi.flags)
            if flags & (_CONNECTING | _HANDSHAKE):
                pending = True
                continue
            peer = endpoint(pi.ip)
            if not self.allows(peer, Source.INCOMING if not flags & _OUTGOING else Source.PEX):
                continue  # connected before the IP filter took effect: never recorded
            connected.add(peer)
            if self._candidate is not None and flags & _OUTGOING:  # its listen port: we can dial it too
                self._candidate(self.key, peer, int(pi.source))
            advertised = int(pi.num_pieces) if num_pieces is not None else None
            self._emit(PeerSnapshot(
                swarm=self.key, peer=peer, at=now, handshake_done=True, incoming=not flags & _OUTGOING,
                source_bits=int(pi.source), peer_id=peer_id_or_none(pi.pid),
                client=_text(pi.client),
                pieces_advertised=advertised, num_pieces=num_pieces, local=endpoint(pi.local_endpoint())))
            if self.planner is not None and advertised and num_pieces is not None:
                if advertised >= num_pieces:
                    self.planner.peer_seen(peer, None)
                elif self.planner.wants_bitfield(peer, today):  # reading a bitfield costs; only when needed
                    self.planner.peer_seen(peer, frozenset(i for i, has in enumerate(pi.pieces) if has))
        self.connected = connected
        if self.planner is not None:
            for gone in set(self.planner.peers) - connected:
                self.planner.peer_gone(gone)
        self._apply_plan()
        return pending

    def sample_last(self) -> None:
        """The last sample before the swarm stops: no completed handshake goes without its row. Skipped when no
        peer can be connected: none at the last sample, none pending, none whose connection alert came since (a
        mass stop of thousands of idle swarms made as many round trips to libtorrent's network thread)."""
        if self.connected or self._unsampled:
            self.sample_now()
