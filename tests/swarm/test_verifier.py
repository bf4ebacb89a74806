"""The verifier's scheduling, with a scripted stand-in for the network probe (the real probe is tested
against real peers in test_wire_client.py, test_real_clients.py and test_identical_seeds.py)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.helpers import wait_for
from tracker_watch.config import settings_from_mapping
from tracker_watch.domain import bencode
from tracker_watch.domain.peers import PeerEvent, PeerSnapshot, PieceSettled
from tracker_watch.swarm.verifier import Verifier
from tracker_watch.swarm.wire import ProbeResult, Reason

PIECE = 16384
DATA = [bytes([i]) * PIECE for i in range(8)]
HASHES = b"".join(hashlib.sha1(d).digest() for d in DATA)


@dataclass
class FakeSwarm:
    key: str = "ab" * 20
    info_hash_v1: bytes | None = b"\xab" * 20
    info: bytes | None = None

    def piece_hashes(self) -> bytes | None:
        return HASHES

    def piece_size(self, piece: int) -> int:
        return PIECE


@dataclass
class Script:
    """What each dial of an IP answers: a list of outcomes, the last repeated."""

    outcomes: dict[str, list[str]]
    calls: list[dict[str, Any]] = field(default_factory=list)

    async def probe(self, ip: str, port: int, infohash: bytes, peer_id: bytes, piece: int, size: int, sha1: bytes,
                    **kw: Any) -> ProbeResult:
        self.calls.append({"ip": ip, "port": port, "peer_id": peer_id, "piece": piece, **kw})
        outcome = self.outcomes[ip][min(len([c for c in self.calls if c["ip"] == ip]) - 1, len(self.outcomes[ip]) - 1)]
        r = ProbeResult(ip=ip, port=port, info_hash=infohash, piece_index=piece, started_at=datetime.now(UTC))
        if outcome == "refused":
            r.reason = Reason.REFUSED
            return r
        r.handshake_ok, r.peer_id, r.client, r.pieces_advertised = True, b"-XX0001-" + b"0" * 12, "X/1", 8
        if outcome == "choked":
            r.reason = Reason.CHOKED
        elif outcome == "self":
            r.reason = Reason.SELF
        else:
            r.payload_bytes, r.verified = PIECE, outcome == "good"
            r.reason = None if r.verified else Reason.HASH_MISMATCH
        return r


def make(script: Script, **verify: Any) -> tuple[Verifier, list[PeerEvent]]:
    settings = settings_from_mapping({"verify": {"retry_base_s": 1.0, "retry_max_s": 2.0, **verify}}).verify
    events: list[PeerEvent] = []
    return Verifier(settings, events.append, ["127.0.0.3"], probe_fn=script.probe), events


@pytest.fixture
async def running() -> AsyncIterator[list[asyncio.Task[None]]]:
    tasks: list[asyncio.Task[None]] = []
    yield tasks
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_one_piece_per_peer_and_a_verdict_from_it_alone(running: list[asyncio.Task[None]]) -> None:
    script = Script({"10.0.0.1": ["good"], "10.0.0.2": ["bad"]})
    v, events = make(script)
    running.append(asyncio.create_task(v.run()))
    v.attach(FakeSwarm())
    v.offer("ab" * 20, ("10.0.0.1", 1), 1)
    v.offer("ab" * 20, ("10.0.0.1", 1), 1)  # named again: still one probe
    v.offer("ab" * 20, ("10.0.0.2", 2), 2)
    await wait_for(lambda: v.stats["verified"] == 1 and v.stats["corrupt"] == 1)
    settled = [e for e in events if isinstance(e, PieceSettled)]
    assert {(e.contributions[0][0], e.passed) for e in settled} == {(("10.0.0.1", 1), True), (("10.0.0.2", 2), False)}
    assert all(len(e.contributions) == 1 for e in settled)
    good = next(e for e in settled if e.passed)
    assert good.sha1 == HASHES[good.piece * 20:good.piece * 20 + 20]
    assert any(isinstance(e, PeerSnapshot) and e.client == "X/1" for e in events)
    assert all(c["local_ip"] == "127.0.0.3" for c in script.calls)
    assert len({c["peer_id"] for c in script.calls}) == len(script.calls)  # a fresh peer id per connection
    await asyncio.sleep(0)  # nothing more is scheduled for either
    assert len(script.calls) == 2
    assert v.pending() == 0


async def test_an_unverified_peer_gets_fresh_chances_with_backoff(running: list[asyncio.Task[None]]) -> None:
    script = Script({"10.0.0.1": ["refused", "choked", "good"]})
    v, _ = make(script)
    running.append(asyncio.create_task(v.run()))
    v.attach(FakeSwarm())
    v.offer("ab" * 20, ("10.0.0.1", 1), 1)
    await wait_for(lambda: v.stats["verified"] == 1, timeout=20)
    assert len(script.calls) == 3


async def test_the_day_budget_of_probes_ends_the_tries(running: list[asyncio.Task[None]]) -> None:
    script = Script({"10.0.0.1": ["refused"]})
    v, _ = make(script, probes_per_peer_per_day=2)
    running.append(asyncio.create_task(v.run()))
    v.attach(FakeSwarm())
    v.offer("ab" * 20, ("10.0.0.1", 1), 1)
    await wait_for(lambda: len(script.calls) == 2, timeout=20)
    v.offer("ab" * 20, ("10.0.0.1", 1), 1)  # named again, but the day's probes are spent
    await asyncio.sleep(2.5)  # longer than the backoff: a third probe would have started by now
    assert len(script.calls) == 2


async def test_our_own_address_and_a_wrong_swarm_are_never_retried(running: list[asyncio.Task[None]]) -> None:
    script = Script({"10.0.0.1": ["self"]})
    v, _ = make(script)
    v.own.add(("10.0.0.9", 9))
    running.append(asyncio.create_task(v.run()))
    v.attach(FakeSwarm())
    v.offer("ab" * 20, ("10.0.0.9", 9), 1)  # our own listen socket, named by a peer
    v.offer("ab" * 20, ("10.0.0.1", 1), 1)
    await wait_for(lambda: len(script.calls) == 1)
    await asyncio.sleep(2.5)
    assert [c["ip"] for c in script.calls] == ["10.0.0.1"]


async def test_nothing_is_probed_before_the_metadata(running: list[asyncio.Task[None]]) -> None:
    script = Script({"10.0.0.1": ["good"]})
    v, _ = make(script)
    running.append(asyncio.create_task(v.run()))
    v.offer("ab" * 20, ("10.0.0.1", 1), 1)
    await asyncio.sleep(0.2)
    assert script.calls == []
    v.attach(FakeSwarm())  # metadata known: the waiting candidate goes at once
    await wait_for(lambda: v.stats["verified"] == 1)


@dataclass
class SimView:
    """A swarm view of one of the simulator's torrents (whose peers serve real blocks)."""

    torrent: Any
    key: str = "cd" * 20
    info_hash_v1: bytes | None = None
    info: bytes | None = None

    def __post_init__(self) -> None:
        self.info_hash_v1 = bytes(self.torrent.info_hash)

    def piece_hashes(self) -> bytes:
        info = bencode.decode(self.torrent.info)
        assert isinstance(info, dict)
        return bytes(info[b"pieces"])

    def piece_size(self, piece: int) -> int:
        return int(self.torrent.piece_length)


async def test_a_peer_that_dials_once_while_every_slot_is_busy_is_held_and_verified(
        running: list[asyncio.Task[None]]) -> None:
    """A peer that dials our listener once (it may be behind NAT: we cannot dial it back) while every probe
    slot is taken used to be hung up on at once, and then waited for a tracker to list it (60 s or never)."""
    from bench.peersim import SimPeer

    release = asyncio.Event()

    async def slow_probe(ip: str, port: int, infohash: bytes, *a: Any, **kw: Any) -> ProbeResult:
        await release.wait()  # an outgoing probe that holds the only slot
        return ProbeResult(ip=ip, port=port, info_hash=infohash, piece_index=0, started_at=datetime.now(UTC),
                           reason=Reason.REFUSED)

    v, port, torrent, view, events = await listening_verifier(running, slow_probe, 3001)
    try:
        v.offer(view.key, ("10.0.0.1", 1), 1)
        await wait_for(lambda: v._slots.locked())
        peer = SimPeer("127.1.201.1", {torrent.info_hash: torrent}, "http://127.0.0.1:9/announce",
                       peer_id=b"-SIM001-" + b"1" * 12)
        dial = asyncio.create_task(peer._dial(("127.0.0.3", port), bytes(torrent.info_hash), set()))
        await wait_for(lambda: v.stats["incoming"] == 1)
        release.set()  # the slot frees up while the peer is held
        await wait_for(lambda: v.stats["verified"] == 1, timeout=30)
        settled = [e for e in events if isinstance(e, PieceSettled)]
        assert [(e.contributions[0][0][0], e.passed) for e in settled] == [("127.1.201.1", True)]
        assert v.stats["incoming_busy"] == 0
        dial.cancel()
        await asyncio.gather(dial, return_exceptions=True)
    finally:
        release.set()
        await v.close()


async def listening_verifier(running: list[asyncio.Task[None]], probe_fn: Any, seed: int
                             ) -> tuple[Verifier, int, Any, SimView, list[PeerEvent]]:
    """A verifier with one probe slot, listening on 127.0.0.3, running, with a simulated torrent attached."""
    from bench.peersim import SimTorrent

    settings = settings_from_mapping({"verify": {"probe_concurrency": 1}}).verify
    events: list[PeerEvent] = []
    v = Verifier(settings, events.append, ["127.0.0.3"], probe_fn=probe_fn)
    port = await v.listen(["127.0.0.3"], 0)
    running.append(asyncio.create_task(v.run()))
    torrent = SimTorrent(seed)
    view = SimView(torrent)
    v.attach(view)
    return v, port, torrent, view, events
