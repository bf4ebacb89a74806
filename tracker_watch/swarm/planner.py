"""Which pieces to ask for, so that each peer proves it holds the work at the least cost. Pure.

A piece is wanted only on behalf of a *candidate*: a peer that completed the handshake, is not known to
be corrupt, and has budget left today. With no candidate nothing is wanted, so nobody is asked for data.
Among the pieces a candidate has, we prefer those that peers whose budget is spent do not have, so the
piece is likely to come from the candidate (libtorrent requests a whole piece from one peer when it can).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date

from tracker_watch.domain.peers import Endpoint


@dataclass
class _Budget:
    day: date
    pieces: int = 0


@dataclass
class _IpBytes:
    day: date
    used: int = 0


@dataclass
class PiecePlanner:
    num_pieces: int
    piece_size: Callable[[int], int]
    pieces_per_peer: int = 1
    bytes_per_ip_per_day: int = 64 * 2**20
    bytes_per_swarm_per_day: int = 512 * 2**20
    max_wanted: int = 4
    rng: random.Random = field(default_factory=random.Random)

    have: set[int] = field(default_factory=set)
    wanted: set[int] = field(default_factory=set)
    corrupt: set[Endpoint] = field(default_factory=set)
    # connected peers that completed the handshake: their pieces (None: all of them)
    peers: dict[Endpoint, frozenset[int] | None] = field(default_factory=dict)
    _budgets: dict[Endpoint, _Budget] = field(default_factory=dict)
    _ip_bytes: dict[str, _IpBytes] = field(default_factory=dict)
    _swarm_bytes: _IpBytes | None = None

    # --- inputs -----------------------------------------------------------------------------------
    def peer_seen(self, peer: Endpoint, pieces: frozenset[int] | None) -> None:
        self.peers[peer] = pieces

    def peer_gone(self, peer: Endpoint) -> None:
        self.peers.pop(peer, None)

    def settled(self, piece: int, passed: bool, contributions: Iterable[tuple[Endpoint, int]], today: date) -> None:
        """Account a finished or failed piece to the peers that supplied it."""
        contributions = list(contributions)
        self.wanted.discard(piece)
        if passed:
            self.have.add(piece)
        elif len(contributions) == 1:
            self.corrupt.add(contributions[0][0])
        for peer, nbytes in contributions:
            self._ip(peer[0], today).used += nbytes
            if passed:
                self._budget(peer, today).pieces += 1
        swarm = self._swarm(today)
        swarm.used += sum(n for _, n in contributions)

    def forget_have(self) -> None:
        """The torrent was re-added with its payload deleted: we hold nothing any more."""
        self.have.clear()
        self.wanted.clear()

    # --- decisions --------------------------------------------------------------------------------
    def is_candidate(self, peer: Endpoint, today: date) -> bool:
        return (peer not in self.corrupt
                and self._budget(peer, today).pieces < self.pieces_per_peer
                and self._ip(peer[0], today).used < self.bytes_per_ip_per_day)

    def wants_bitfield(self, peer: Endpoint, today: date) -> bool:
        """Whether the engine should read this peer's (possibly large) bitfield."""
        return self.is_candidate(peer, today)

    def plan(self, today: date) -> tuple[set[int], set[int]]:
        """Returns (pieces to start wanting, pieces to stop wanting) and updates `wanted`."""
        candidates = {p: pcs for p, pcs in self.peers.items() if self.is_candidate(p, today)}
        if self._swarm(today).used >= self.bytes_per_swarm_per_day:
            candidates = {}
        keep = {w for w in self.wanted if w not in self.have and any(_has(pcs, w) for pcs in candidates.values())}
        drop = self.wanted - keep
        add: set[int] = set()
        spent = [pcs for p, pcs in self.peers.items() if p not in candidates]
        for pieces in candidates.values():
            if len(keep) + len(add) >= self.max_wanted:
                break
            if any(_has(pieces, w) for w in keep | add):
                continue  # a piece it can supply is already wanted
            choice = self._choose(pieces, keep | add, spent)
            if choice is not None:
                add.add(choice)
        self.wanted = keep | add
        return add, drop

    def _choose(self, pieces: frozenset[int] | None, taken: set[int], spent: list[frozenset[int] | None]) -> int | None:
        pool = range(self.num_pieces) if pieces is None else pieces
        options = [p for p in pool if p not in self.have and p not in taken]
        if not options:
            return None
        if len(options) > 256:  # big torrents: a random sample is as good and keeps planning cheap
            options = self.rng.sample(options, 256)
        # fewest holders among peers we must not ask; ties broken at random
        return min(options, key=lambda p: (sum(_has(s, p) for s in spent), self.rng.random()))

    # --- bookkeeping ------------------------------------------------------------------------------
    def _budget(self, peer: Endpoint, today: date) -> _Budget:
        b = self._budgets.get(peer)
        if b is None or b.day != today:
            b = self._budgets[peer] = _Budget(today)
        return b

    def _ip(self, ip: str, today: date) -> _IpBytes:
        b = self._ip_bytes.get(ip)
        if b is None or b.day != today:
            b = self._ip_bytes[ip] = _IpBytes(today)
        return b

    def _swarm(self, today: date) -> _IpBytes:
        if self._swarm_bytes is None or self._swarm_bytes.day != today:
            self._swarm_bytes = _IpBytes(today)
        return self._swarm_bytes

    def prune(self, today: date) -> None:
        """Drop budget entries from earlier days (bounded memory on long runs)."""
        self._budgets = {k: v for k, v in self._budgets.items() if v.day == today or k in self.peers}
        self._ip_bytes = {k: v for k, v in self._ip_bytes.items() if v.day == today}


def _has(pieces: frozenset[int] | None, piece: int) -> bool:
    return pieces is None or piece in pieces
