"""Prepare-ahead: the next batch is hashed and folded in a worker thread while the current one is written;
a failed write throws the prepared batch away, and everything still lands once, in one intact chain."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.helpers import wait_for
from tests.ledger.test_observations import _obs, _target
from tracker_watch.evidence.batcher import Batcher
from tracker_watch.evidence.spool import Spool
from tracker_watch.ledger.db import Database
from tracker_watch.ledger.evidence import EvidenceWriter, Prepared
from tracker_watch.ledger.verify import verify_ledger


async def test_a_failed_write_discards_the_prepared_batch_and_loses_nothing(db: Database, tmp_path: Path) -> None:
    target = await _target(db)
    writer = EvidenceWriter(db.pool, "n1", Ed25519PrivateKey.generate())
    calls: list[int] = []

    async def flaky(p: Prepared) -> int:
        calls.append(len(p.observations))
        if len(calls) == 2:  # the second batch fails once, after the third was prepared ahead
            raise ConnectionError("database went away")
        return await writer.write_prepared(p)

    prepared: list[Any] = []

    def prepare(batch: Any) -> Prepared:
        prepared.append(len(batch))
        return writer.prepare(batch)

    spool = Spool(tmp_path / "spool", 2**24, segment_bytes=2**12)
    spool.open()
    b = Batcher(flaky, spool, batch_size=10, flush_interval_s=0.05, prepare=prepare)
    obs = [_obs(target, ip=f"127.0.{i // 10}.{i % 10 + 1}", port=1000 + i) for i in range(45)]
    for o in obs:  # a backlog, as after an outage: every batch but the last has a full one behind it
        b.put(o)
    b.start()
    await wait_for(lambda: b.pending == 0, timeout=30)
    assert await b.stop(timeout=2) == 0
    assert b.failures == 1
    assert calls == [10, 10, 10, 10, 10, 5]
    assert len(prepared) == len(calls) + 1  # the batch prepared during the failed write was prepared again
    rows = await db.pool.fetch("SELECT id FROM observations")
    assert sorted(r["id"] for r in rows) == sorted(o.id for o in obs)
    async with db.pool.acquire() as conn:
        report = await verify_ledger(conn)
    assert report.ok
    assert report.rows == 45 + await db.pool.fetchval("SELECT count(*) FROM incident_changes")
