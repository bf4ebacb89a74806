"""Targeted verification: every candidate peer is asked for a piece over a connection of our own to it alone.

libtorrent's piece picker decides whom *it* asks, so in a swarm of fast seeds most peers are never asked and
stay unproven (docs/verification.md). Here the engine offers every dialable peer it learns of (tracker, DHT,
PEX, connected outgoing); for each (swarm, IP) not yet proven today we dial that peer ourselves
(swarm/wire), ask it for one piece, and hash what it alone sent against the info dictionary. The verdict
leaves as the same events the collector already reads: a PeerSnapshot (handshake, client, what it
advertises, our address) and a PieceSettled with that peer as the only contributor — verified, or, if the
whole piece it sent fails the hash, corrupt.

A candidate that could not be verified (refused, choked, busy) is tried again with backoff while it is still
named in the swarm, within the day's budget: probes per IP, pieces per IP, bytes per IP and per swarm.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import os
import random
from collections.abc import Awaitable, Callable
from datetime import date

from tracker_watch import log
from tracker_watch.config import VerifySettings
from tracker_watch.domain import mse
from tracker_watch.domain.evidence import normalize_ip, utc_now_ms
from tracker_watch.domain.peers import Endpoint, PeerEvent, PeerSnapshot, PieceSettled
from tracker_watch.swarm.candidates import SwarmView
from tracker_watch.swarm.candidates import VerifyCandidate as _Candidate
from tracker_watch.swarm.lane_jobs import LaneJobs, ProbeFn
from tracker_watch.swarm.lanes import lane_probe
from tracker_watch.swarm.listener import GatedListener
from tracker_watch.swarm.wire import PieceSpec, ProbeResult, Reason, Timeouts, probe
from tracker_watch.swarm.wire.incoming import Choice, verify_incoming

_log = log.get("tracker_watch.verify")
ALTERNATIVES = 64  # other pieces a partial seeder may serve instead of the first choice
INCOMING_HOLD_S = 20.0  # how long a peer that dialled us is held for the swarm's metadata or a free slot
# × probe_concurrency: connections from peers held at most (beyond, they wait in the listen backlog: see
# swarm/listener.py). A held peer costs one socket.
INCOMING_HELD = 16
PRESENCE_S = 1800.0  # a peer not named again for this long has left: no more retries on its behalf
_GIVE_UP = {Reason.WRONG_INFOHASH, Reason.SELF}  # never worth another connection today


class Verifier:
    def __init__(self, settings: VerifySettings, emit: Callable[[PeerEvent], None], local_ips: list[str],
                 probe_fn: ProbeFn = probe, client_name: str = "tracker-watch",
                 own: set[Endpoint] | None = None, session_ips: set[str] | None = None,
                 hold: Callable[[str], Awaitable[None]] | None = None,
                 release: Callable[[str], None] | None = None, lane_fn: ProbeFn = lane_probe) -> None:
        self.settings = settings
        # When a probe must come from an address the session also dials from, the session is kept off the
        # peer meanwhile (hold/release): clients take one connection per address (docs/verification.md).
        self.session_ips = session_ips or set()
        self._hold, self._release = hold, release
        self.own = own if own is not None else set()  # our own listen sockets: a peer may name them (PEX)
        self._emit = emit
        # where our connections come from, per address family (the first configured address of each)
        self.local_ips = {4: next((ip for ip in local_ips if ":" not in ip), None),
                          6: next((ip for ip in local_ips if ":" in ip), None)}
        self._probe = probe_fn
        self.client_name = client_name
        self.swarms: dict[str, SwarmView] = {}
        self.candidates: dict[tuple[str, str], _Candidate] = {}
        # swarm key → the IPs of its candidates, and the infohashes it registered (`_by_hash`, `_expected`):
        # attach and detach touch only the swarm's own entries (a scan of every swarm's made a mass stop and
        # 5,000 metadata arrivals quadratic)
        self._ips_of: dict[str, set[str]] = {}
        self._hashes_of: dict[str, set[bytes]] = {}
        self.swarm_bytes: dict[tuple[str, date], int] = {}
        self._heap: list[tuple[float, int, tuple[str, str]]] = []
        self._seq = 0
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(settings.probe_concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._by_hash: dict[bytes, str] = {}  # v1 infohash → swarm key: what a peer dialling us may ask for
        self._expected: dict[bytes, asyncio.Event] = {}  # watched, metadata not yet known: set when it is
        self._skeys = mse.SkeyIndex()  # both of those, as an encrypted handshake names them (domain/mse.py)
        # connections peers opened to us: at most this many held, the next ones wait in the kernel's backlog
        self._listener = GatedListener(self._accept, INCOMING_HELD * settings.probe_concurrency)
        self.listen_port = 0
        self.allows: Callable[[str], bool] = lambda ip: True  # the engine's address policy
        self.stats = {"probes": 0, "verified": 0, "corrupt": 0, "failed": 0, "payload_bytes": 0,
                      "lanes": 0, "incoming_busy": 0, "incoming_no_metadata": 0, "incoming_nothing": 0, "incoming": 0}
        # lanes: single-peer libtorrent sessions for what the wire client cannot do (uTP-only peers, pure v2)
        self.lanes = LaneJobs(settings, self.local_ips, self.session_ips, lane_fn, self.stats, self._within_budget,
                              self._record, self._finished)

    # --- what the engine tells us ----------------------------------------------------------------
    def expect(self, key: str, info_hash_v1: bytes | None) -> None:
        """A swarm is watched but its metadata not known yet: peers that dial us for it are held a moment."""
        if info_hash_v1 is not None:
            self._expected.setdefault(info_hash_v1, asyncio.Event())
            self._hashes_of.setdefault(key, set()).add(info_hash_v1)
            self._skeys.add(info_hash_v1)

    def attach(self, swarm: SwarmView) -> None:
        """The swarm's metadata is known: its pending candidates can be probed."""
        self.swarms[swarm.key] = swarm
        if swarm.info_hash_v1 is not None:
            self._by_hash[swarm.info_hash_v1] = swarm.key
            self._hashes_of.setdefault(swarm.key, set()).add(swarm.info_hash_v1)
            self._skeys.add(swarm.info_hash_v1)
            if (event := self._expected.pop(swarm.info_hash_v1, None)) is not None:
                event.set()
        for ip in self._ips_of.get(swarm.key, ()):
            if not (cand := self.candidates[(swarm.key, ip)]).done:
                self._schedule(cand, 0.0)

    def detach(self, key: str) -> None:
        self.swarms.pop(key, None)
        for h in self._hashes_of.pop(key, ()):
            if self._by_hash.get(h) == key:
                del self._by_hash[h]
            if (event := self._expected.pop(h, None)) is not None:
                event.set()
            if h not in self._by_hash:
                self._skeys.discard(h)
        for ip in self._ips_of.pop(key, ()):
            del self.candidates[(key, ip)]

    def _new_candidate(self, key: str, ip: str, today: date) -> _Candidate:
        cand = self.candidates[(key, ip)] = _Candidate(key, ip, today)
        self._ips_of.setdefault(key, set()).add(ip)
        return cand

    def offer(self, key: str, peer: Endpoint, source_bits: int = 0) -> None:
        """A dialable address of this swarm (named by a tracker, the DHT or PEX, or connected outgoing)."""
        if peer in self.own:
            return
        loop = asyncio.get_running_loop()
        today = utc_now_ms().date()
        cand = self.candidates.get((key, peer[0]))
        if cand is None or cand.day != today:  # a new day: a fresh budget, and a fresh verdict
            cand = self._new_candidate(key, peer[0], today)
        cand.ports[peer[1]] = cand.ports.get(peer[1], 0) | source_bits
        cand.seen_at = loop.time()
        if not (cand.done or cand.busy) and cand.due is None and key in self.swarms:
            self._schedule(cand, 0.0)

    # --- scheduling ------------------------------------------------------------------------------
    def _schedule(self, cand: _Candidate, delay: float) -> None:
        due = asyncio.get_running_loop().time() + delay
        if cand.due is not None and cand.due <= due:
            return
        cand.due = due
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, (cand.key, cand.ip)))
        self._wake.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                while self._heap and self._heap[0][0] <= loop.time():
                    due, _, ident = heapq.heappop(self._heap)
                    cand = self.candidates.get(ident)
                    if cand is None or cand.due != due:
                        continue  # superseded by an earlier schedule, or forgotten
                    cand.due = None
                    await self._slots.acquire()  # backpressure: at most probe_concurrency at once
                    self._start(cand)
                self._wake.clear()
                timeout = self._heap[0][0] - loop.time() if self._heap else None
                try:
                    async with asyncio.timeout(timeout):
                        await self._wake.wait()
                except TimeoutError:
                    pass
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _start(self, cand: _Candidate) -> None:
        job = self._job(cand)
        if job is None:
            self._slots.release()
            return
        cand.busy = True
        work = self._verify(cand, *job) if job[2] else self.lanes.verify(cand, job[0], job[1])
        task = asyncio.create_task(work, name=f"verify-{cand.key[:8]}-{cand.ip}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _job(self, cand: _Candidate) -> tuple[SwarmView, int, bytes, int, list[tuple[int, int, bytes]]] | None:
        """(swarm, port, v1 infohash, first piece, alternatives), or None if nothing may be done now."""
        swarm = self.swarms.get(cand.key)
        s = self.settings
        loop_time = asyncio.get_running_loop().time()
        if (swarm is None or cand.done or cand.busy or cand.day != utc_now_ms().date() or not cand.ports
                or loop_time - cand.seen_at > PRESENCE_S or cand.probes >= s.probes_per_peer_per_day):
            return None
        port = max(cand.ports, key=lambda p: (cand.ports[p], p))  # prefer a port a tracker or the DHT named
        if swarm.info_hash_v1 is None:  # pure v2: only a lane checks its merkle proofs (b"" marks a lane job)
            return (swarm, port, b"", 0, []) if self.lanes.may_run(cand, swarm) else None
        pieces = self._pieces(swarm, cand)
        if pieces is None:
            return None
        first, *others = pieces
        return swarm, port, swarm.info_hash_v1, first[0], others

    def _pieces(self, swarm: SwarmView, cand: _Candidate) -> list[tuple[int, int, bytes]] | None:
        """A random piece and alternatives (index, size, SHA-1), or None: v2-only, or the day's budget is spent."""
        hashes = swarm.piece_hashes()
        if swarm.info_hash_v1 is None or not hashes:
            return None  # v2-only: its pieces need Merkle proofs; a lane checks those (swarm/lanes.py)
        count = len(hashes) // 20
        picks = random.sample(range(count), min(count, ALTERNATIVES + 1))
        pieces = [(i, swarm.piece_size(i), hashes[i * 20:i * 20 + 20]) for i in picks]
        return pieces if self._within_budget(cand, max(size for _, size, _ in pieces)) else None

    def _within_budget(self, cand: _Candidate, biggest: int) -> bool:
        """The day's byte budget allows one more piece of `biggest` bytes, from this peer and in this swarm;
        else the candidate is done for today."""
        spent = self.swarm_bytes.get((cand.key, cand.day), 0)
        s = self.settings
        if cand.bytes + biggest > s.bytes_per_peer_per_day or spent + biggest > s.bytes_per_swarm_per_day:
            _log.info("verify_budget_spent", infohash=cand.key, peer=cand.ip)
            cand.done = True
            return False
        return True

    # --- peers that dial us (NAT'd ones can be reached no other way) -----------------------------
    async def listen(self, hosts: list[str], port: int) -> int:
        """Serve verification to peers that connect to us (the port trackers are told); returns the port."""
        self.listen_port = port = await self._listener.listen(hosts, port)  # the same port on every address
        _log.info("verifier_listening", addresses=hosts, port=port)
        return port

    async def close(self) -> None:
        await self._listener.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        ip = normalize_ip(str(peer[0])) if peer else ""
        if not ip or not self.allows(ip):
            writer.close()
            return
        self.stats["incoming"] += 1
        taken: list[_Candidate] = []
        slot: list[bool] = []

        async def choose(info_hash: bytes) -> Choice | None:
            # A peer that dialled us may be one we can reach no other way (NAT), and may dial only once: hold
            # it a moment, rather than lose it, while the swarm's metadata arrives or a slot frees up.
            hold_until = asyncio.get_running_loop().time() + INCOMING_HOLD_S
            if info_hash in self._expected and info_hash not in self._by_hash:
                event = self._expected[info_hash]
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(hold_until):
                        await event.wait()
                if not event.is_set():
                    self.stats["incoming_no_metadata"] += 1
            cand = self._incoming_candidate(info_hash, ip)
            swarm = self.swarms.get(cand.key) if cand is not None else None
            pieces = self._pieces(swarm, cand) if swarm is not None and cand is not None else None
            if cand is None or swarm is None or pieces is None:
                self.stats["incoming_nothing"] += 1
                return None
            cand.busy = True
            taken.append(cand)
            try:
                async with asyncio.timeout_at(hold_until):
                    await self._slots.acquire()
            except TimeoutError:
                self.stats["incoming_busy"] += 1
                return None
            slot.append(True)
            cand.probes += 1
            n = len(swarm.piece_hashes() or b"") // 20
            specs = [PieceSpec(info_hash, n, i, size, digest) for i, size, digest in pieces]
            return specs[0], specs[1:]

        try:
            result = await verify_incoming(
                reader, writer, choose, self._skeys, _peer_id(),
                allow_plaintext=self.settings.probe_encryption != "require",
                timeouts=Timeouts(total=self.settings.probe_timeout_s), client_name=self.client_name)
            if result is not None and taken and slot:
                self.stats["probes"] += 1
                self._record(taken[0], (ip, int(peer[1])), result, 0, incoming=True)
        except Exception as exc:  # a bug here must not stop the listener
            _log.exception("verify_failed", peer=ip, error=str(exc)[:300])
        finally:
            if slot:
                self._slots.release()
            for cand in taken:
                cand.busy = False
                if not cand.done and cand.ports and cand.key in self.swarms:  # dialable too: try that later
                    self._schedule(cand, self.settings.retry_base_s if slot else 0.0)

    def _incoming_candidate(self, info_hash: bytes, ip: str) -> _Candidate | None:
        key = self._by_hash.get(info_hash)
        if key is None:
            return None
        today = utc_now_ms().date()
        cand = self.candidates.get((key, ip))
        if cand is None or cand.day != today:
            cand = self._new_candidate(key, ip, today)
        cand.seen_at = asyncio.get_running_loop().time()
        if cand.done or cand.busy or cand.probes >= self.settings.probes_per_peer_per_day:
            return None
        return cand

    async def _verify(self, cand: _Candidate, swarm: SwarmView, port: int, info_hash: bytes, piece: int,
                      others: list[tuple[int, int, bytes]]) -> None:
        try:
            cand.probes += 1
            self.stats["probes"] += 1
            hashes = swarm.piece_hashes() or b""
            expected = hashes[piece * 20:piece * 20 + 20]
            local_ip = self.local_ips[6 if ":" in cand.ip else 4]
            shared = local_ip is None or local_ip in self.session_ips
            if shared and self._hold is not None:
                await self._hold(cand.ip)
            try:
                result = await self._probe(
                    cand.ip, port, info_hash, _peer_id(), piece, swarm.piece_size(piece), expected,
                    num_pieces=len(hashes) // 20, local_ip=local_ip, encryption=self.settings.probe_encryption,
                    timeouts=Timeouts(total=self.settings.probe_timeout_s), client_name=self.client_name,
                    alternatives=others)
            finally:
                if shared and self._release is not None:
                    self._release(cand.ip)
            self._record(cand, (cand.ip, port), result, cand.ports.get(port, 0))
            await self.lanes.after(cand, swarm, port, result)
        except Exception as exc:  # a bug here must not stop verification of everyone else
            _log.exception("verify_failed", infohash=cand.key, peer=cand.ip, error=str(exc)[:300])
            cand.failures += 1
        finally:
            self._finished(cand)

    def _finished(self, cand: _Candidate) -> None:
        cand.busy = False
        self._slots.release()
        if not cand.done and cand.key in self.swarms:
            delay = min(self.settings.retry_base_s * 2 ** max(0, cand.failures - 1), self.settings.retry_max_s)
            self._schedule(cand, delay if cand.failures else 0.0)

    def _record(self, cand: _Candidate, peer: Endpoint, r: ProbeResult, source_bits: int,
                incoming: bool = False) -> None:
        at = utc_now_ms()
        self.stats["payload_bytes"] += r.payload_bytes  # whatever came, verified or not: the download budget
        if r.handshake_ok:
            self._emit(PeerSnapshot(swarm=cand.key, peer=peer, at=at, handshake_done=True, incoming=incoming,
                                    source_bits=source_bits, peer_id=r.peer_id, client=r.client,
                                    pieces_advertised=r.pieces_advertised, num_pieces=_num_pieces(self, cand.key),
                                    local=r.local))
        if r.verified is None:
            cand.failures += 1
            self.stats["failed"] += 1
            if r.reason in _GIVE_UP:
                cand.done = True
            _log.info("verify_unfinished", infohash=cand.key, peer=f"{peer[0]}:{peer[1]}", reason=str(r.reason),
                      detail=r.detail[:200], probes=cand.probes)
            return
        nbytes = r.payload_bytes
        cand.bytes += nbytes
        key = (cand.key, cand.day)
        self.swarm_bytes[key] = self.swarm_bytes.get(key, 0) + nbytes
        hashes = self.swarms[cand.key].piece_hashes() if cand.key in self.swarms else None
        digest = hashes[r.piece_index * 20:r.piece_index * 20 + 20] if hashes and r.verified else None
        self._emit(PieceSettled(swarm=cand.key, piece=r.piece_index, passed=r.verified, at=at,
                                contributions=((peer, r.peer_id, nbytes),), sha1=digest,
                                sha256=r.sha256 if r.verified else None))
        if r.verified:
            cand.pieces += 1
            cand.failures = 0
            cand.done = cand.pieces >= self.settings.pieces_per_peer
            self.stats["verified"] += 1
        else:
            cand.done = True  # proven: the whole piece it alone sent is not the work
            self.stats["corrupt"] += 1
        _log.info("verify_done", infohash=cand.key, peer=f"{peer[0]}:{peer[1]}", piece=r.piece_index,
                  verified=r.verified, bytes=nbytes, client=r.client, encrypted=r.encrypted, via=r.attempts[:2])

    def pending(self) -> int:
        return sum(1 for c in self.candidates.values() if not c.done)


def _num_pieces(verifier: Verifier, key: str) -> int | None:
    swarm = verifier.swarms.get(key)
    hashes = swarm.piece_hashes() if swarm else None
    return len(hashes) // 20 if hashes else None


def _peer_id() -> bytes:
    """A fresh peer id per connection: clients drop a second connection that reuses one (docs/verification.md)."""
    return b"-TW0100-" + os.urandom(6).hex().encode()

