"""A piece of OFF_LOOP_BYTES or more is hashed in a worker thread, a smaller one on the event loop; the verdict
and the fingerprint are the same either way. Against a scripted peer over real loopback TCP."""

from __future__ import annotations

import hashlib
import os
import threading

import pytest

from tests.swarm.wire_peers import FAST, PEER_ID, PROBE_IP, FakePeer
from tracker_watch.domain import peerwire as pw
from tracker_watch.swarm.wire import Reason, probe
from tracker_watch.swarm.wire import session as session_module

BIG = os.urandom(session_module.OFF_LOOP_BYTES)  # 16 blocks
SMALL = os.urandom(3 * pw.BLOCK)


@pytest.fixture
def hashed_on_loop(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """For each piece hashed: was it on the event loop's thread?"""
    on_loop: list[bool] = []
    real = session_module.digests

    def recording(data: bytes) -> tuple[bytes, bytes]:
        on_loop.append(threading.current_thread() is threading.main_thread())
        return real(data)

    monkeypatch.setattr(session_module, "digests", recording)
    return on_loop


async def test_a_large_piece_is_hashed_off_the_loop_and_a_small_one_on_it(hashed_on_loop: list[bool]) -> None:
    fake = await FakePeer("127.0.0.112", [BIG, SMALL]).start()
    try:
        big, small = await fake.probe(0), await fake.probe(1)
    finally:
        await fake.stop()
    assert (big.verified, big.reason, big.payload_bytes) == (True, None, len(BIG))
    assert big.sha256 == hashlib.sha256(BIG).digest()
    assert (small.verified, small.sha256) == (True, hashlib.sha256(SMALL).digest())
    assert hashed_on_loop == [False, True]


async def test_a_large_piece_that_fails_the_hash_off_the_loop_is_a_mismatch(hashed_on_loop: list[bool]) -> None:
    fake = await FakePeer("127.0.0.112", [BIG]).start()
    try:
        r = await probe(fake.ip, fake.port, fake.info_hash, PEER_ID, 0, len(BIG), hashlib.sha1(b"other").digest(),
                        num_pieces=1, local_ip=PROBE_IP, timeouts=FAST, encryption="plaintext")
    finally:
        await fake.stop()
    assert (r.verified, r.reason) == (False, Reason.HASH_MISMATCH)
    assert hashed_on_loop == [False]
