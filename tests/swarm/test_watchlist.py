"""A stored target that cannot be watched is set aside with its reason; every other target, the watchlist, a
restart and the API go on. (One bad .torrent used to stop every node that leased it.)"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import Callable

import asyncpg
import pytest

from tests.conftest import SettingsFactory
from tests.helpers import wait_for, wait_for_async
from tracker_watch.daemon import Daemon
from tracker_watch.demo.run import PROBE_IP
from tracker_watch.demo.swarm import LocalSwarm
from tracker_watch.domain import bencode
from tracker_watch.domain.targets import parse_target
from tracker_watch.ledger.db import Database
from tracker_watch.ledger.targets import TargetStore
from tracker_watch.swarm.engine import SwarmEngine
from tracker_watch.swarm.swarm import Swarm, SwarmSpec
from tracker_watch.swarm.watchlist import APPLY_CHUNK

# a v1 info dict with fewer piece hashes than its length needs: libtorrent refuses to add it
POISON = bencode.encode({b"name": b"poison.bin", b"piece length": 16384, b"length": 5 * 16384,
                         b"pieces": b"\x01" * 40})


async def store_raw(pool: asyncpg.Pool, holder: str, v1: bytes, info: bytes) -> int:
    """A target row as an older version (or a hand edit) could have left it: stored info libtorrent refuses."""
    async with pool.acquire() as conn:
        holder_id = await conn.fetchval("INSERT INTO rights_holders (name) VALUES ($1) RETURNING id", holder)
        work_id = await conn.fetchval("INSERT INTO works (holder_id, title) VALUES ($1, 'Film') RETURNING id",
                                      holder_id)
        target_id: int = await conn.fetchval(
            "INSERT INTO targets (work_id, infohash_v1, input_kind, info, name) VALUES ($1, $2, 'torrent', $3, 'x') "
            "RETURNING id", work_id, v1, info)
        return target_id


async def status_of(pool: asyncpg.Pool, target_id: int) -> tuple[str, str | None]:
    row = await pool.fetchrow("SELECT status, error FROM targets WHERE id = $1", target_id)
    assert row is not None
    return row["status"], row["error"]


def our_started_announces(swarm: LocalSwarm) -> int:
    return sum(1 for ih, ip, _, event in swarm.tracker.announces
               if ih == swarm.content.v1 and ip == PROBE_IP and event == "started")  # we announce from there


async def test_a_poisoned_target_never_stops_the_others(make_settings: SettingsFactory,
                                                        local_swarm: LocalSwarm) -> None:
    settings = make_settings()
    daemon = Daemon(settings)
    await daemon.start()
    try:
        pool = daemon.db.pool
        good, _ = await TargetStore(pool).register(parse_target(local_swarm.content.magnet([local_swarm.tracker.url])),
                                                   "Studio A", "Film", actor="test")
        assert local_swarm.content.v1 is not None
        shared = await store_raw(pool, "Studio B", local_swarm.content.v1, POISON)  # same swarm, broken copy
        alone = await store_raw(pool, "Studio C", os.urandom(20), POISON)
        assert daemon.engine is not None
        engine = daemon.engine

        async def set_aside() -> bool:
            return [(await status_of(pool, t))[0] for t in (shared, alone)] == ["error", "error"]

        await wait_for_async(set_aside, timeout=60)
        for target in (shared, alone):
            _, reason = await status_of(pool, target)
            assert reason is not None
            assert "piece hashes" in reason
        await wait_for(lambda: good.key in engine.swarms, timeout=60)
        # the good holder's swarm runs and is announced once, not on every poll
        assert daemon.watchlist is not None
        polls = daemon.watchlist._polls
        await wait_for(lambda: daemon.watchlist is not None and daemon.watchlist._polls >= polls + 4, timeout=60)
        assert our_started_announces(local_swarm) <= 2
        audit = await pool.fetch("SELECT actor FROM audit_log WHERE action = 'target.error'")
        assert {r["actor"] for r in audit} == {"node:demo"}
    finally:
        await daemon.stop()
    # a restart is clean: the set-aside targets stay aside, the good one is watched again
    again = Daemon(settings)
    await again.start()
    try:
        assert again.engine is not None
        await wait_for(lambda: again.engine is not None and good.key in again.engine.swarms, timeout=60)
        assert again.watchlist is not None
        assert shared not in again.watchlist.rows
        assert alone not in again.watchlist.rows
        # resuming retries it; it is set aside again with the same reason
        assert await TargetStore(again.db.pool).set_status(alone, "active", actor="test")

        async def aside_again() -> bool:
            return await status_of(again.db.pool, alone) == ("error", (await status_of(again.db.pool, shared))[1])

        await wait_for_async(aside_again, timeout=60)
    finally:
        await again.stop()


async def test_taking_over_many_targets_yields_to_the_event_loop(make_settings: SettingsFactory,
                                                                   db: Database) -> None:
    """Starting a swarm holds the loop ~0.2 ms; thousands at once once held it for seconds (alerts, the API and
    the verifier all waited). Now the watchlist lets the loop run every APPLY_CHUNK swarms: a ticker that
    records how many swarms run at each turn of the loop never sees more than a chunk appear at once."""
    n = await _register_magnets(db, 4 * APPLY_CHUNK + 10)
    assert await _most_started_in_one_turn(Daemon(make_settings()), n) <= APPLY_CHUNK


async def test_slow_starts_yield_to_the_event_loop_before_a_chunk_is_done(make_settings: SettingsFactory,
                                                                          db: Database,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """At 10,000 busy swarms each start waits for libtorrent's busy network thread, and a chunk of 64 starts
    held the loop 70–177 ms. Here each start is made 3 ms slower (the real engine and libtorrent still do
    the work): the loop runs again after pacing.SLICE_S, a few swarms in, not after a whole chunk."""
    watch = SwarmEngine.watch

    def slow_watch(self: SwarmEngine, spec: SwarmSpec) -> Swarm:
        swarm = watch(self, spec)
        until = time.monotonic() + 0.003
        while time.monotonic() < until:
            pass
        return swarm

    monkeypatch.setattr(SwarmEngine, "watch", slow_watch)
    n = await _register_magnets(db, 2 * APPLY_CHUNK + 10)
    assert await _most_started_in_one_turn(Daemon(make_settings()), n) <= APPLY_CHUNK // 4


async def _most_started_in_one_turn(daemon: Daemon, n: int) -> int:
    """The most swarms that appeared in one turn of the loop while the daemon started them all."""
    seen = await _start_ticked(daemon, n, lambda d: len(d.engine.swarms) if d.engine is not None else 0)
    assert seen[-1] == n
    return max(b - a for a, b in itertools.pairwise(seen))


async def _start_ticked(daemon: Daemon, n: int, read: Callable[[Daemon], int | None]) -> list[int]:
    """Start the daemon (it takes the leases and starts every swarm before start() returns) with a ticker that
    records `read(daemon)` at each turn of the loop (None: nothing to record yet); what it recorded."""
    seen: list[int] = []

    async def ticker() -> None:
        while True:
            if (value := read(daemon)) is not None:
                seen.append(value)
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    try:
        await daemon.start()
        assert daemon.engine is not None
        assert len(daemon.engine.swarms) == n
    finally:
        task.cancel()
        await daemon.stop()
    return seen


async def test_grouping_many_new_targets_yields_to_the_event_loop(make_settings: SettingsFactory,
                                                                    db: Database) -> None:
    """Before any swarm starts, a pass groups every changed target (~30 µs each): 10,000 new targets held the
    loop ~0.3 s in one turn (BENCHMARKS.md, capacity under load, fifth pass). A ticker that records how many
    swarms still wait to be grouped at each turn of the loop never sees more than a chunk go at once."""
    n = await _register_magnets(db, 4 * APPLY_CHUNK + 10)
    seen = await _start_ticked(Daemon(make_settings()), n,
                               lambda d: len(d.watchlist._dirty) if d.watchlist is not None else None)
    waiting = [k for k in seen if k]
    assert len(set(waiting)) >= n // APPLY_CHUNK - 1  # the ticker ran between chunks: it saw them waiting
    assert max(a - b for a, b in itertools.pairwise(seen)) <= APPLY_CHUNK


async def _register_magnets(db: Database, n: int) -> int:
    """n new targets (random magnets, no peers); returns n."""
    store = TargetStore(db.pool)
    for _ in range(n):
        await store.register(parse_target("magnet:?xt=urn:btih:" + os.urandom(20).hex()), "Studio", "Film",
                             actor="test")
    return n
