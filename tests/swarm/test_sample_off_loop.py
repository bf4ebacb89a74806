"""A swarm's timer-driven sample reads its peers off the event loop.

`get_peer_info()` is a round trip to libtorrent's network thread; at 5,000 busy swarms under the peer simulator's
burst one took 174 ms, all of it on the loop (BENCHMARKS.md, capacity under load, fifth and sixth passes). Here the
real handle's read is held in the worker thread until the loop itself lets it go: with the read on the loop, the
loop could never do so, and the read was let go only by the gate's safety timeout.
"""

from __future__ import annotations

import threading
from typing import Any

from tests.swarm.helpers import EngineUnderTest, wait_for
from tracker_watch.demo.swarm import LocalSwarm
from tracker_watch.domain.peers import PeerSnapshot
from tracker_watch.swarm.swarm import Swarm

SAFETY_S = 10.0  # only so that a failing run ends; the tests never wait for it to pass


class GatedHandle:
    """The swarm's real libtorrent handle; its next peer read waits for the gate (everything else passes)."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.timed_out = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)

    def get_peer_info(self) -> Any:
        if not self.entered.is_set():
            self.entered.set()
            self.timed_out = not self.gate.wait(SAFETY_S)
        return self._handle.get_peer_info()


MARK = ("192.0.2.1", 1)  # never a real peer: whether a sample overwrote `connected` shows if it was applied


async def _watched(eut: EngineUnderTest, local_swarm: LocalSwarm) -> Swarm:
    swarm = eut.watch_magnet(local_swarm, with_info=True)
    eut.feed_seeders(local_swarm, swarm.key)
    await wait_for(lambda: bool(eut.of(PeerSnapshot)), timeout=30)  # sampled with peers at least once
    return swarm


def _record_applied(swarm: Swarm) -> list[set[Any]]:
    """`connected` right after each read result was handed back to the swarm on the loop."""
    calls: list[set[Any]] = []
    name = "_sampled" if hasattr(swarm, "_sampled") else "_sample"  # before: the timer read on the loop itself
    original = getattr(swarm, name)

    def sampled(*args: Any) -> None:
        original(*args)
        calls.append(set(swarm.connected))

    setattr(swarm, name, sampled)
    return calls


async def _gated_sample(swarm: Swarm, meanwhile: Any) -> tuple[GatedHandle, list[set[Any]]]:
    """One timer-driven sample whose read waits for the gate; `meanwhile` runs on the loop while it waits."""
    real = swarm.handle
    gated = GatedHandle(real)
    swarm.handle = gated
    applied = _record_applied(swarm)
    try:
        swarm.request_sample(0.0)
        await wait_for(gated.entered.is_set, timeout=30)
        meanwhile()  # the read is waiting in libtorrent's stead: this loop turn runs meanwhile
        gated.gate.set()  # and is what lets it go
        await wait_for(lambda: len(applied) >= 1, timeout=30)
    finally:
        gated.gate.set()
        swarm.handle = real
    return gated, applied


async def test_the_loop_runs_while_a_sample_waits_for_libtorrent(eut: EngineUnderTest,
                                                                 local_swarm: LocalSwarm) -> None:
    swarm = await _watched(eut, local_swarm)
    swarm.connected = {MARK}
    gated, applied = await _gated_sample(swarm, lambda: None)
    assert not gated.timed_out  # the loop, not the safety timeout, let the read go
    assert MARK not in applied[0]  # and its result was applied


async def test_a_read_that_outlived_its_handle_is_dropped(eut: EngineUnderTest, local_swarm: LocalSwarm) -> None:
    swarm = await _watched(eut, local_swarm)

    def recycled() -> None:  # re-added meanwhile, as a payload recycle does: a new generation
        swarm.replaced(swarm.handle)
        swarm.connected = {MARK}

    gated, applied = await _gated_sample(swarm, recycled)
    assert not gated.timed_out
    assert applied[0] == {MARK}  # the old generation's peers were not applied to the new one


async def test_a_read_that_a_newer_sample_overtook_is_dropped(eut: EngineUnderTest,
                                                              local_swarm: LocalSwarm) -> None:
    swarm = await _watched(eut, local_swarm)

    def sampled_now() -> None:  # the synchronous sample before a recycle or a stop: newer than the read
        swarm.sample_now()
        swarm.connected = {MARK}

    gated, applied = await _gated_sample(swarm, sampled_now)
    assert not gated.timed_out
    assert applied[0] == {MARK}


async def test_a_read_that_outlived_its_swarm_is_dropped(eut: EngineUnderTest, local_swarm: LocalSwarm) -> None:
    swarm = await _watched(eut, local_swarm)

    def stopped() -> None:
        swarm.close()
        swarm.connected = {MARK}

    gated, applied = await _gated_sample(swarm, stopped)
    assert not gated.timed_out
    assert applied[0] == {MARK}
