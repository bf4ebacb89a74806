"""The lease heartbeat never waits for the watchlist (issue 14): a node busy applying thousands of swarms kept
its heartbeat behind the watchlist's lock, missed its lease and fenced itself (BENCHMARKS.md, "Lease fencing
at 5,000"). Here the watchlist is held busy by a real holder of its lock, longer than the lease lasts."""

from __future__ import annotations

import asyncio
import os
import time

from tests.conftest import SettingsFactory
from tests.helpers import wait_for, wait_for_async
from tracker_watch import metrics
from tracker_watch.daemon import Daemon
from tracker_watch.domain.targets import parse_target
from tracker_watch.ledger.targets import TargetStore

TTL, BEAT = 3.0, 0.5  # fenced lease_ttl_s − heartbeat_s = 2.5 s after the last committed beat


def _fenced() -> float:
    return float(metrics.LEASE_CHANGES.labels(change="fenced")._value.get())


async def _register(d: Daemon) -> str:
    infohash = os.urandom(20)
    await TargetStore(d.db.pool).register(parse_target(f"magnet:?xt=urn:btih:{infohash.hex()}"), "Studio",
                                          f"Film {infohash.hex()[:6]}", actor="test")
    return infohash.hex()


async def test_heartbeats_commit_while_the_watchlist_is_busy_and_the_node_never_fences(
        make_settings: SettingsFactory) -> None:
    d = Daemon(make_settings(node={"lease_ttl_s": TTL, "heartbeat_s": BEAT}))
    await d.start()
    try:
        assert d.engine is not None
        assert d.watchlist is not None
        assert d.ownership is not None
        first = await _register(d)
        await wait_for(lambda: first in d.engine.swarms, timeout=30)  # type: ignore[union-attr]
        fenced = _fenced()

        async def beats() -> list[object]:
            return [r["heartbeat_at"] for r in await d.db.pool.fetch(
                "SELECT heartbeat_at FROM nodes WHERE name = $1", d.settings.node.name)]

        async with d.watchlist._lock:  # the watchlist is busy (as while it starts or stops thousands of swarms)
            held = time.monotonic()
            second = await _register(d)  # a new target while it is busy: the beats that follow hold it
            seen = {str(b) for b in await beats()}

            async def beats_commit_past_the_lease() -> bool:
                seen.update(str(b) for b in await beats())
                return time.monotonic() - held > 2 * TTL and len(seen) >= 6
            await wait_for_async(beats_commit_past_the_lease, timeout=60, step=0.1)
            assert d.ownership.valid(), "the leases lapsed while the watchlist was busy"
            assert first in d.engine.swarms  # nothing was stopped
        # free again: the latest owned set handed over is applied, the new target with it
        await wait_for(lambda: second in d.engine.swarms, timeout=30)  # type: ignore[union-attr]
        assert first in d.engine.swarms
        assert _fenced() == fenced  # never fenced
    finally:
        await d.stop()


async def test_heartbeats_commit_while_the_event_loop_is_saturated(make_settings: SettingsFactory) -> None:
    """A beat is a dozen round trips; on a main loop whose every turn takes 0.4 s of Python (as with thousands of
    announces and swarm starts in flight) it outlasted the lease. The beat runs on a loop of its own now."""
    d = Daemon(make_settings(node={"lease_ttl_s": TTL, "heartbeat_s": BEAT}))
    await d.start()
    try:
        assert d.engine is not None
        assert d.ownership is not None
        key = await _register(d)
        await wait_for(lambda: key in d.engine.swarms, timeout=30)  # type: ignore[union-attr]
        fenced = _fenced()
        loop = asyncio.get_running_loop()
        busy = {"on": True}

        def hold() -> None:  # 0.4 s of Python on the loop, then again at the next turn
            end = time.perf_counter() + 0.4
            while time.perf_counter() < end:
                pass
            if busy["on"]:
                loop.call_soon(hold)

        loop.call_soon(hold)
        seen: set[float] = set()  # the deadline each committed beat sets (read without a round trip of ours)
        held = time.monotonic()

        def beats_commit_past_the_lease() -> bool:
            assert d.ownership is not None
            seen.add(d.ownership.valid_until)
            return time.monotonic() - held > 3 * TTL
        try:
            await wait_for(beats_commit_past_the_lease, timeout=60, step=0.1)
        finally:
            busy["on"] = False
        assert len(seen) >= 4  # beats kept committing
        assert _fenced() == fenced  # and the node never fenced itself
        assert key in d.engine.swarms
    finally:
        await d.stop()
