"""Stopping one swarm touches only that swarm's own entries (issue 14). The collector, the verifier and the engine
each rebuilt a map over every swarm per stop, so a mass stop (a fence, a drain) of 5,000 swarms was quadratic.
The maps here count their whole-map walks (iteration, items/keys/values): each is O(swarms) work, and stopping
(or attaching) thousands of swarms must take none."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime
from typing import Any

from tests.conftest import SettingsFactory
from tests.helpers import Walks
from tracker_watch.domain.evidence import Source
from tracker_watch.domain.peers import PeerListed
from tracker_watch.evidence.collector import Collector, TargetRef
from tracker_watch.swarm.engine import SwarmEngine
from tracker_watch.swarm.swarm import SwarmSpec
from tracker_watch.swarm.verifier import Verifier

N = 3000
T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def _walks(*maps: Any) -> int:
    return sum(m.walks if isinstance(m, Walks) else 1 for m in maps)  # a map replaced by a rebuilt one: walked


def test_the_collector_forgets_a_stopped_swarm_without_walking_the_others() -> None:
    rows: list[Any] = []
    c = Collector("n", "v", rows.append)
    keys = [os.urandom(20).hex() for _ in range(N)]
    for i, key in enumerate(keys):
        c.set_targets(key, [TargetRef(i, bytes.fromhex(key), None)])
        c.handle(PeerListed(key, ("127.0.0.9", 1000 + i % 50), Source.TRACKER, T0))
    peers = c.peers = Walks(c.peers)
    for key in keys[1:]:
        c.set_targets(key, [])
    assert _walks(c.peers) == 0
    assert c.peers is peers
    assert len(peers) == 1  # the one still running keeps its peer
    c.handle(PeerListed(keys[1], ("127.0.0.9", 9), Source.TRACKER, T0))  # a stopped swarm records nothing
    assert len(rows) == N


class _View:
    def __init__(self, key: str) -> None:
        self.key = key
        self.info_hash_v1: bytes | None = bytes.fromhex(key)
        self.info: bytes | None = None

    def piece_hashes(self) -> bytes | None:
        return b"\0" * 20

    def piece_size(self, piece: int) -> int:
        return 16384


async def test_the_verifier_attaches_and_detaches_a_swarm_without_walking_the_others(
        make_settings: SettingsFactory) -> None:
    v = Verifier(make_settings().verify, lambda e: None, ["127.0.0.1"])
    keys = [os.urandom(20).hex() for _ in range(N)]
    for i, key in enumerate(keys):
        v.expect(key, bytes.fromhex(key))
        v.offer(key, (f"127.0.{i % 200}.{i % 250 + 1}", 6881))  # named before its metadata is known
    v.candidates, v._by_hash, v._expected = Walks(v.candidates), Walks(v._by_hash), Walks(v._expected)
    for key in keys:
        v.attach(_View(key))
    assert _walks(v.candidates, v._by_hash, v._expected) == 0
    assert len(v._heap) == N  # every candidate was scheduled once its swarm's metadata came
    for key in keys[1:]:
        v.detach(key)
    assert _walks(v.candidates, v._by_hash, v._expected) == 0
    assert list(v.candidates) == [(keys[0], "127.0.0.1")]
    assert list(v._by_hash.values()) == [keys[0]]
    assert not v._expected


async def test_the_engine_unwatches_a_swarm_without_walking_the_others(make_settings: SettingsFactory) -> None:
    engine = SwarmEngine(make_settings(), lambda e: None)
    await engine.start()
    try:
        specs = [SwarmSpec(key=(h := os.urandom(20)).hex(), infohash_v1=h, infohash_v2=None, info=None, trackers=())
                 for _ in range(N)]
        for i, spec in enumerate(specs):
            engine.watch(spec)
            if i % 64 == 0:
                await asyncio.sleep(0)
        engine.discovery.by_hash = Walks(engine.discovery.by_hash)
        for spec in specs[1:]:
            engine.unwatch(spec.key)
        assert _walks(engine.discovery.by_hash) == 0
        assert list(engine.discovery.by_hash) == [specs[0].infohash_v1]
        assert list(engine.swarms) == [specs[0].key]
    finally:
        await engine.stop()
