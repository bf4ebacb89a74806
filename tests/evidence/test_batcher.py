"""Batches reach PostgreSQL by size and by time, and survive a failing database without loss or duplicates."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.evidence.conftest import SmallDisk, fill
from tests.helpers import wait_for
from tests.ledger.test_observations import _obs, _target, writer
from tracker_watch.domain.evidence import Grade, encode_observation
from tracker_watch.evidence.batcher import Batcher
from tracker_watch.evidence.spool import Spool
from tracker_watch.ledger.db import Database
from tracker_watch.ledger.observations import ObservationStore


def _spool(path: Path, max_bytes: int = 2**24) -> Spool:
    spool = Spool(path / "spool", max_bytes, segment_bytes=min(max_bytes, 2**16))
    spool.open()
    return spool


async def test_size_trigger(db: Database, tmp_path: Path) -> None:
    target = await _target(db)
    store = ObservationStore(db.pool)
    sizes: list[int] = []
    b = Batcher(writer(db).write, _spool(tmp_path), batch_size=10, flush_interval_s=30,
                on_batch=lambda n, s: sizes.append(n))
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


async def test_time_trigger(db: Database, tmp_path: Path) -> None:
    target = await _target(db)
    store = ObservationStore(db.pool)
    b = Batcher(writer(db).write, _spool(tmp_path), batch_size=1000, flush_interval_s=0.2)
    b.start()
    for i in range(3):
        b.put(_obs(target, port=i + 1))
    await wait_for(lambda: b.written == 3, timeout=5)
    assert await store.count() == 3
    assert await b.stop(timeout=2) == 0


async def test_database_failure_is_retried_without_duplicates(db: Database, tmp_path: Path) -> None:
    target = await _target(db)
    store = ObservationStore(db.pool)
    b = Batcher(writer(db).write, _spool(tmp_path), batch_size=5, flush_interval_s=0.05)
    await db.pool.execute("ALTER TABLE observations RENAME TO observations_away")
    b.start()
    batch = [_obs(target, port=i + 1) for i in range(12)]
    for o in batch:
        b.put(o)
    await asyncio.sleep(1.0)
    assert b.failures >= 1
    assert b.pending == 12
    assert b.spool.pending_bytes > 0  # on disk, not in memory
    await db.pool.execute("ALTER TABLE observations_away RENAME TO observations")
    for o in batch[:3]:
        b.put(o)  # the same observations again (a replay): ids make them harmless
    assert await b.stop(timeout=5) == 0
    assert await store.count() == 12


async def test_what_the_database_never_got_is_written_after_a_restart(db: Database, tmp_path: Path) -> None:
    target = await _target(db)
    store = ObservationStore(db.pool)
    await db.pool.execute("ALTER TABLE observations RENAME TO observations_away")
    b = Batcher(writer(db).write, _spool(tmp_path), batch_size=5, flush_interval_s=0.05)
    b.start()
    for i in range(23):
        b.put(_obs(target, port=i + 1))
    assert await b.stop(timeout=0.5) == 23  # left in the spool, not lost
    await db.pool.execute("ALTER TABLE observations_away RENAME TO observations")
    again = Batcher(writer(db).write, _spool(tmp_path), batch_size=5, flush_interval_s=0.05)
    assert again.pending == 23
    again.start()
    await wait_for(lambda: again.pending == 0, timeout=10)
    assert await again.stop(timeout=2) == 0
    assert await store.count() == 23


async def test_a_full_spool_keeps_direct_evidence_longest_and_counts_what_it_drops(db: Database,
                                                                                  tmp_path: Path) -> None:
    target = await _target(db)
    await db.pool.execute("ALTER TABLE observations RENAME TO observations_away")  # nothing drains
    b = Batcher(writer(db).write, _spool(tmp_path, max_bytes=2**16), batch_size=10**6, flush_interval_s=60)
    while b.dropped == 0:
        b.put(_obs(target, port=1 + b.pending % 60000, grade=Grade.LISTED))
    listed_kept = b.pending
    assert b.spool.pending_bytes >= 0.9 * 2**16  # listed stops at the reserve ...
    while b.dropped == 1:
        b.put(_obs(target, port=1, grade=Grade.VERIFIED))
    assert b.pending > listed_kept  # ... direct evidence fills it
    assert b.spool.pending_bytes <= 2**16 + 2048
    await b.stop(timeout=0.1)
    await db.pool.execute("ALTER TABLE observations_away RENAME TO observations")


async def test_a_corrupt_spool_record_is_reported_and_the_rest_written(db: Database, tmp_path: Path) -> None:
    target = await _target(db)
    spool = _spool(tmp_path)
    batch = [_obs(target, port=i + 1) for i in range(10)]
    for o in batch:
        spool.append(encode_observation(o))
    spool.close()
    [segment] = [p for p in (tmp_path / "spool").glob("*.seg") if p.stat().st_size]
    data = bytearray(segment.read_bytes())
    data[data.index(str(batch[4].id).encode())] ^= 0x01  # one flipped bit in the fifth record
    segment.write_bytes(bytes(data))
    b = Batcher(writer(db).write, _spool(tmp_path), batch_size=100, flush_interval_s=0.05)
    b.start()
    await wait_for(lambda: b.pending == 0, timeout=10)
    assert await b.stop(timeout=2) == 0
    assert b.corrupt == 1
    stored = {r["id"] for r in await db.pool.fetch("SELECT id FROM observations")}
    assert stored == {o.id for i, o in enumerate(batch) if i != 4}


async def test_stop_returns_whenever_it_comes(db: Database, tmp_path: Path) -> None:
    """Regression: on Python 3.11, asyncio.wait_for around the idle wait swallowed stop()'s cancel when the
    wake-up had just completed, and stop() then waited on the writer task for ever (found by bench.ingestion).
    A full batch arrives, then stop() follows after 0, 1, 2, … loop turns, so one of them lands in that gap."""
    target = await _target(db)
    for turns in range(6):
        b = Batcher(writer(db).write, _spool(tmp_path / str(turns)), batch_size=10, flush_interval_s=30)
        b.start()
        await asyncio.sleep(0.05)  # idle, waiting for a batch
        for i in range(10):
            b.put(_obs(target, port=100 * turns + i + 1))  # a full batch: wakes the writer
        for _ in range(turns):
            await asyncio.sleep(0)
        assert await asyncio.wait_for(b.stop(timeout=5), timeout=20) == 0  # a deadline against a hang
    assert await ObservationStore(db.pool).count() == 60


async def test_a_full_disk_costs_only_the_observations_it_refused(db: Database, small_disk: SmallDisk) -> None:
    """Regression: after ENOSPC cut a record short, later batches lost their last record (20 of 1,000)."""
    target = await _target(db)
    disk = small_disk("1m")  # room for all 1,250 once the other file is gone
    spool = Spool(disk / "spool", 2**30, segment_bytes=2**20)
    spool.open()
    b = Batcher(writer(db).write, spool, batch_size=50, flush_interval_s=0.05)
    b.start()
    ports = iter(range(1, 60000))
    for _ in range(50):
        b.put(_obs(target, port=next(ports)))
    fill(disk / "something-else")  # another program fills the disk ...
    for _ in range(200):
        b.put(_obs(target, port=next(ports)))
    assert b.dropped > 0
    (disk / "something-else").unlink()  # ... and frees it again
    for _ in range(1000):
        b.put(_obs(target, port=next(ports)))
    await wait_for(lambda: b.spool.pending_bytes == 0, timeout=30)  # everything in the spool was read
    assert b.corrupt == 0
    assert await ObservationStore(db.pool).count() == 1250 - b.dropped
    assert await b.stop(timeout=5) == 0


async def test_a_spool_that_filled_the_disk_drains_once_the_database_is_back(db: Database,
                                                                             small_disk: SmallDisk) -> None:
    """Regression: commit() needed room for a new cursor file before it deleted anything, so a spool that had
    filled the disk itself never drained."""
    target = await _target(db)
    store = ObservationStore(db.pool)
    await db.pool.execute("ALTER TABLE observations RENAME TO observations_away")
    disk = small_disk("128k")
    spool = Spool(disk / "spool", 2**30, segment_bytes=16 * 1024)
    spool.open()
    b = Batcher(writer(db).write, spool, batch_size=50, flush_interval_s=0.05)
    b.start()
    put = 0
    while b.dropped < 20:
        put += 1
        b.put(_obs(target, port=put))
    await db.pool.execute("ALTER TABLE observations_away RENAME TO observations")
    await wait_for(lambda: b.pending == 0, timeout=30)
    assert await store.count() == put - b.dropped
    dropped = b.dropped
    for i in range(100):  # the room came back
        b.put(_obs(target, port=put + i + 1))
    assert b.dropped == dropped
    assert await b.stop(timeout=5) == 0
    assert await store.count() == put + 100 - dropped
