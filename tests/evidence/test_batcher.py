"""Batches reach PostgreSQL by size and by time, and survive a failing database without loss or duplicates."""

from __future__ import annotations

import asyncio

from tests.helpers import wait_for
from tests.ledger.test_observations import _obs, _target, writer
from tracker_watch.evidence.batcher import Batcher
from tracker_watch.ledger.db import Database
from tracker_watch.ledger.observations import ObservationStore


async def test_size_trigger(db: Database) -> None:
    target = await _target(db)
    store = ObservationStore(db.pool)
    sizes: list[int] = []
    b = Batcher(writer(db).write, batch_size=10, flush_interval_s=30, on_batch=lambda n, s: sizes.append(n))
    b.start()
    for i in range(9):
        b.put(_obs(target, port=i + 1))
    await asyncio.sleep(0.3)
    assert await store.count() == 0  # below the batch size, and the timer is 30 s away
    b.put(_obs(target, port=100))
    await wait_for(lambda: b.written == 10, timeout=5)
    assert sizes == [10]
    assert await store.count() == 10
    assert await b.stop(timeout=2) == 0


async def test_time_trigger(db: Database) -> None:
    target = await _target(db)
    store = ObservationStore(db.pool)
    b = Batcher(writer(db).write, batch_size=1000, flush_interval_s=0.2)
    b.start()
    for i in range(3):
        b.put(_obs(target, port=i + 1))
    await wait_for(lambda: b.written == 3, timeout=5)
    assert await store.count() == 3
    assert await b.stop(timeout=2) == 0


async def test_database_failure_is_retried_without_duplicates(db: Database) -> None:
    target = await _target(db)
    store = ObservationStore(db.pool)
    b = Batcher(writer(db).write, batch_size=5, flush_interval_s=0.05)
    await db.pool.execute("ALTER TABLE observations RENAME TO observations_away")
    b.start()
    batch = [_obs(target, port=i + 1) for i in range(12)]
    for o in batch:
        b.put(o)
    await asyncio.sleep(1.0)
    assert b.failures >= 1
    assert b.pending == 12
    await db.pool.execute("ALTER TABLE observations_away RENAME TO observations")
    for o in batch[:3]:
        b.put(o)  # the same observations again (a replay): ids make them harmless
    assert await b.stop(timeout=5) == 0
    assert await store.count() == 12
