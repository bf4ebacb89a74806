"""A peer that dials the verifier with encryption (MSE) is found among many swarms without hashing each.

The MSE handshake names its torrent only as HASH('req2', infohash) xor HASH('req3', S). The responder used to
try every infohash the node serves, two SHA-1s each, inside one event-loop callback: ~27 ms per encrypted
incoming connection at 10,000 swarms (libtorrent's default is to try encryption first), on top of copying the
list of every infohash for each connection, encrypted or not. Real libtorrent dials in with encryption forced."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import libtorrent as lt
import pytest

from tests.helpers import wait_for
from tests.swarm.wire_peers import start_seeder
from tracker_watch.config import settings_from_mapping
from tracker_watch.domain import mse
from tracker_watch.domain.peers import PeerEvent, PieceSettled
from tracker_watch.swarm.verifier import Verifier
from tracker_watch.swarm.wire import ProbeResult

VERIFIER_IP = "127.0.0.113"
OTHER_SWARMS = 3000


@dataclass
class View:
    """A swarm view: the seeder's torrent, or one of the many others the node watches."""

    key: str
    info_hash_v1: bytes | None
    ti: Any = None
    info: bytes | None = None

    def piece_hashes(self) -> bytes | None:
        if self.ti is None:
            return bytes(20)
        return b"".join(bytes(self.ti.hash_for_piece(i)) for i in range(self.ti.num_pieces()))

    def piece_size(self, piece: int) -> int:
        return int(self.ti.piece_size(piece)) if self.ti is not None else 16384


@pytest.fixture
async def verifier() -> AsyncIterator[tuple[Verifier, list[PeerEvent]]]:
    async def never(*a: Any, **kw: Any) -> ProbeResult:
        raise AssertionError("no outgoing probe in this test")

    events: list[PeerEvent] = []
    v = Verifier(settings_from_mapping({}).verify, events.append, [VERIFIER_IP], probe_fn=never)
    task = asyncio.create_task(v.run())
    yield v, events
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await v.close()


async def test_an_encrypted_peer_is_found_among_many_swarms_without_hashing_each(
        verifier: tuple[Verifier, list[PeerEvent]], monkeypatch: pytest.MonkeyPatch) -> None:
    v, events = verifier
    port = await v.listen([VERIFIER_IP], 0)
    for i in range(OTHER_SWARMS):  # watched before the seeder's: a scan in order meets them all first
        v.attach(View(key=f"{i:040x}", info_hash_v1=os.urandom(20)))
    for i in range(OTHER_SWARMS // 2):  # and some whose metadata is not known yet
        v.expect(f"e{i:039x}", os.urandom(20))
    seeder = await start_seeder("127.0.0.106", "forced")
    try:
        assert seeder.content.v1 is not None
        v.attach(View(key=seeder.content.v1.hex(), info_hash_v1=seeder.content.v1,
                      ti=lt.torrent_info(seeder.content.torrent)))
        hashed = [0]
        real_sha1 = mse.sha1

        def counted(*parts: bytes) -> bytes:
            hashed[0] += 1
            return real_sha1(*parts)

        monkeypatch.setattr(mse, "sha1", counted)
        seeder.handle.connect_peer((VERIFIER_IP, port))
        await wait_for(lambda: v.stats["verified"] == 1, timeout=60)
    finally:
        seeder.stop()
    settled = [e for e in events if isinstance(e, PieceSettled)]
    assert [(e.contributions[0][0][0], e.passed) for e in settled] == [(seeder.ip, True)]
    # one handshake: req1, HASH('req3', S), the two stream keys — not two per infohash served (6,006 before)
    assert hashed[0] <= 8, hashed[0]
