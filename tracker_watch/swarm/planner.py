"""Which pieces to ask for, so that each peer proves it holds the work at the least cost. Pure.

A piece is wanted only on behalf of a *candidate*: a peer that completed the handshake (or that we are
dialling for the first time today), is not known to be corrupt, and has budget left today. With no
candidate nothing is wanted, so nobody is asked for data. Wanting something also matters for staying
connected: a torrent that wants nothing tells peers it is upload-only, and seeds then hang up.
Each wanted piece is wanted *for* one candidate, chosen among the pieces it has, preferring those that
peers whose budget is spent lack, so that the piece is likely to come from the candidate (libtorrent
asks one peer for a whole piece when it can). libtorrent still decides who serves it: a piece that
settles without the candidate's help counts as an attempt against its IP, and after `max_attempts` the
IP rests until the next day — this bounds what already-verified peers can be asked for on its behalf,
also when one address keeps reconnecting from new ports. A dial grace that ends with a piece wanted for the
peer and no handshake counts as an attempt too, so an address that never answers cannot hold a piece for
long. An IP that alone sent a piece failing the hash check (or that libtorrent banned) is never a candidate
again.
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
    attempts: int = 0


@dataclass
class PiecePlanner:
    num_pieces: int
    piece_size: Callable[[int], int]
    pieces_per_peer: int = 1
    bytes_per_ip_per_day: int = 64 * 2**20
    bytes_per_swarm_per_day: int = 512 * 2**20
    max_wanted: int = 4
    max_attempts: int = 3
    dial_grace_s: float = 30.0
    redial_s: float = 300.0
    rng: random.Random = field(default_factory=random.Random)

    have: set[int] = field(default_factory=set)
    wanted: set[int] = field(default_factory=set)
    corrupt: set[str] = field(default_factory=set)  # IP addresses: proven liars, or banned by libtorrent
    assigned: dict[int, Endpoint] = field(default_factory=dict)  # wanted piece → the candidate it is for
    # connected peers that completed the handshake: their pieces (None: all of them)
    peers: dict[Endpoint, frozenset[int] | None] = field(default_factory=dict)
    # peers being dialled for the first time today → until when they count as candidates (monotonic s)
    dialling: dict[Endpoint, float] = field(default_factory=dict)
    _dialled: dict[Endpoint, float] = field(default_factory=dict)  # when each peer was last dialled (monotonic)
    _budgets: dict[Endpoint, _Budget] = field(default_factory=dict)
    _ip_bytes: dict[str, _IpBytes] = field(default_factory=dict)
    _swarm_bytes: _IpBytes | None = None

    # --- inputs -----------------------------------------------------------------------------------
    def dialling_peer(self, peer: Endpoint, today: date, now: float) -> bool:
        """A listed peer not yet verified is being dialled: want a piece now, so that we do not look
        upload-only when it answers (seeds hang up on upload-only peers). At most every `redial_s` per peer,
        so an address listed at every announce that never answers costs little. Returns whether the peer
        became a candidate (a fresh chance, whatever its earlier attempts)."""
        self._end_graces(today, now)
        # a grace running is not renewed: an address listed at every announce (more often than the grace
        # lasts) that never answers held its piece, and so the payload, for as long as it was listed
        if peer in self.peers or peer in self.dialling or now - self._dialled.get(peer, -1e18) < self.redial_s \
                or not self.is_candidate(peer, today, alone=self._alone(peer)):
            return False
        self._dialled[peer] = now
        self.dialling[peer] = now + self.dial_grace_s
        return True

    def peer_seen(self, peer: Endpoint, pieces: frozenset[int] | None) -> None:
        self.peers[peer] = pieces
        self.dialling.pop(peer, None)

    def peer_gone(self, peer: Endpoint, dial_failed: bool = False) -> None:
        """A connection with the peer ended. A failed dial ends nothing: libtorrent goes on to the next way in
        (uTP then TCP, MSE then plaintext) or a later retry, so the peer stays what it was — connected, or a
        candidate until its dial grace ends. Taking it off unwanted its piece until the next sample saw it
        connected, and such a flap at a hash failure could leave libtorrent asking nobody for the piece."""
        if dial_failed:
            return
        self.peers.pop(peer, None)
        self.dialling.pop(peer, None)

    def settled(self, piece: int, passed: bool, contributions: Iterable[tuple[Endpoint, int]], today: date) -> None:
        """Account a finished or failed piece to the peers that supplied it."""
        contributions = list(contributions)
        senders = {peer for peer, _ in contributions}
        owner = self.assigned.get(piece)
        if owner is not None and (not passed or owner not in senders):
            self._ip(owner[0], today).attempts += 1
        if passed:
            self.have.add(piece)
            self.wanted.discard(piece)
            self.assigned.pop(piece, None)
        elif len(contributions) == 1:  # a failed piece proves something only against a sole sender
            self.corrupt.add(contributions[0][0][0])
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
        self.assigned.clear()

    # --- decisions --------------------------------------------------------------------------------
    def is_candidate(self, peer: Endpoint, today: date, alone: bool = False) -> bool:
        """Whether we still want to verify this peer today. Its IP's attempts only run out while others could
        serve in its place: a peer `alone` among the connected holders of its pieces can only serve itself."""
        ip = self._ip(peer[0], today)
        return (peer[0] not in self.corrupt and self._budget(peer, today).pieces < self.pieces_per_peer
                and (alone or ip.attempts < self.max_attempts) and ip.used < self.bytes_per_ip_per_day)

    def _end_graces(self, today: date, now: float) -> None:
        """Dial graces that ran out without a handshake. A peer that held a wanted piece all its grace and never
        answered costs its IP an attempt, as a piece wanted for it that others served does: otherwise an address
        that cannot deliver (a stopped client the tracker still lists, a decoy) kept a piece wanted whenever
        nobody else served it, and the payload with it, as long as it was listed."""
        ended = [p for p, until in self.dialling.items() if until <= now]
        holders = set(self.assigned.values())
        for peer in ended:
            del self.dialling[peer]
            if peer in holders:
                self._ip(peer[0], today).attempts += 1

    def _alone(self, peer: Endpoint) -> bool:
        """No other connected peer (that we would still talk to) could serve a piece wanted for this one."""
        return all(p[0] == peer[0] or p[0] in self.corrupt for p in self.peers)

    def wants_bitfield(self, peer: Endpoint, today: date) -> bool:
        """Whether the engine should read this peer's (possibly large) bitfield."""
        return self.is_candidate(peer, today)

    def plan(self, today: date, now: float) -> tuple[set[int], set[int]]:
        """Returns (pieces to start wanting, pieces to stop wanting) and updates `wanted`."""
        self._end_graces(today, now)
        candidates = {p: pcs for p, pcs in self.peers.items() if self.is_candidate(p, today, alone=self._alone(p))}
        candidates.update({p: None for p in self.dialling
                           if p not in candidates and self.is_candidate(p, today, alone=self._alone(p))})
        if self._swarm(today).used >= self.bytes_per_swarm_per_day:
            candidates = {}
        assigned = {w: p for w, p in self.assigned.items()
                    if w in self.wanted and w not in self.have and p in candidates and _has(candidates[p], w)}
        served = set(assigned.values())
        spent = [pcs for p, pcs in self.peers.items() if p not in candidates]
        for peer, pieces in candidates.items():
            if len(assigned) >= self.max_wanted:
                break
            if peer in served:
                continue
            choice = self._choose(pieces, set(assigned), spent)
            if choice is not None:
                assigned[choice] = peer
                served.add(peer)
        self.assigned = assigned
        wanted = set(assigned)
        add, drop = wanted - self.wanted, self.wanted - wanted
        self.wanted = wanted
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
        self._dialled = {k: v for k, v in self._dialled.items() if k in self.peers or k in self.dialling}


def _has(pieces: frozenset[int] | None, piece: int) -> bool:
    return pieces is None or piece in pieces
