"""Piece attribution when alerts interleave: a failed piece must never be pinned on the wrong peer.

libtorrent re-downloads a failed piece at once, so block alerts of the next attempt can arrive before
the failed one settles. This ordering cannot be forced with real peers, so these tests feed the alerts'
content directly; the only libtorrent call the tracker makes (read_piece) is recorded by a stand-in.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from tests.helpers import wait_for
from tracker_watch.domain.peers import PeerEvent, PeerLied, PieceSettled
from tracker_watch.swarm.pieces import PieceTracker

LIAR, SEED, OTHER = ("127.0.0.77", 1), ("127.0.0.11", 2), ("127.0.0.12", 3)
DATA = b"\x07" * 65536


class ReadRecorder:
    def __init__(self) -> None:
        self.reads: list[int] = []

    def read_piece(self, piece: int) -> None:
        self.reads.append(piece)


def tracker(events: list[PeerEvent]) -> PieceTracker:
    return PieceTracker("s", lambda p: 65536, hashlib.sha1(DATA).digest() * 4, events.append,
                        lambda *a: None, asyncio.get_running_loop(), max_waits=3)


async def test_next_attempt_does_not_inherit_the_blame() -> None:
    events: list[PeerEvent] = []
    t = tracker(events)
    for block in range(4):
        t.block_finished(1, block, LIAR, None)
    t.hash_failed(1)
    for block in range(4):  # the re-download from an honest seed, before the failure settled
        t.block_finished(1, block, SEED, b"s" * 20)
    handle = ReadRecorder()
    t.piece_finished(1, handle)
    t.read_done(1, DATA)
    await wait_for(lambda: len(events) == 2, timeout=5)
    failed, passed = events
    assert isinstance(failed, PieceSettled)
    assert isinstance(passed, PieceSettled)
    assert (failed.passed, [c[0] for c in failed.contributions]) == (False, [LIAR])
    assert (passed.passed, [c[0] for c in passed.contributions]) == (True, [SEED])
    assert handle.reads == [1]


async def test_late_block_alert_joins_its_own_attempt() -> None:
    events: list[PeerEvent] = []
    t = tracker(events)
    for block in range(3):
        t.block_finished(2, block, SEED, None)
    t.piece_finished(2, ReadRecorder())  # before the last block's alert (posted after the disk write)
    t.block_finished(2, 3, OTHER, None)
    t.read_done(2, DATA)
    await wait_for(lambda: len(events) == 1, timeout=5)
    settled: Any = events[0]
    assert sorted((c[0], c[2]) for c in settled.contributions) == [(SEED, 49152), (OTHER, 16384)]
    assert settled.sha1 == hashlib.sha1(DATA).digest()


async def test_incomplete_failure_blames_nobody() -> None:
    events: list[PeerEvent] = []
    t = tracker(events)
    t.block_finished(3, 0, SEED, None)
    t.hash_failed(3)  # three blocks' alerts never came: we do not know who sent them
    await wait_for(lambda: len(events) == 1, timeout=15)
    settled: Any = events[0]
    assert settled.passed is False
    assert settled.contributions == ()


async def test_data_that_does_not_match_the_torrent_is_not_credited() -> None:
    events: list[PeerEvent] = []
    t = tracker(events)
    for block in range(4):
        t.block_finished(4, block, SEED, None)
    t.piece_finished(4, ReadRecorder())
    t.read_done(4, b"\x00" * 65536)  # libtorrent said it passed; our own SHA-1 disagrees
    await asyncio.sleep(1.5)
    assert events == []


async def test_a_ban_is_evidence_only_against_a_peer_none_of_whose_data_ever_passed() -> None:
    events: list[PeerEvent] = []
    t = tracker(events)
    for block in range(4):  # a piece shared by the liar and an honest seed fails …
        t.block_finished(5, block, LIAR if block % 2 else SEED, None)
    t.hash_failed(5)
    for block in range(4):  # … and the seed's next piece passes
        t.block_finished(6, block, SEED, None)
    t.piece_finished(6, ReadRecorder())
    t.read_done(6, DATA)
    t.banned(LIAR, b"l" * 20)  # libtorrent bans both (trust points fall for every sender of a failed piece)
    t.banned(SEED, b"s" * 20)
    await wait_for(lambda: any(isinstance(e, PeerLied) for e in events), timeout=10)
    await asyncio.sleep(0.5)
    lied = [e for e in events if isinstance(e, PeerLied)]
    assert [e.peer for e in lied] == [LIAR]
    assert t.record == {LIAR[0]: [0, 1], SEED[0]: [1, 1]}
