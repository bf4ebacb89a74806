"""A spool left by the previous release (version 1 records) is written after an upgrade: nothing lost, nothing twice."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import wait_for
from tests.ledger.test_observations import _obs, _target, writer
from tracker_watch.domain.evidence import encode_observation, encode_observation_v1
from tracker_watch.evidence.batcher import Batcher
from tracker_watch.evidence.spool import Spool
from tracker_watch.ledger.db import Database


async def test_old_and_new_records_in_one_spool_are_all_written_once(db: Database, tmp_path: Path) -> None:
    target = await _target(db)
    old = [_obs(target, port=i + 1) for i in range(25)]  # spooled by the previous release, then it stopped
    spool = Spool(tmp_path / "spool", 2**24, segment_bytes=2**12)
    spool.open()
    for o in old:
        spool.append(encode_observation_v1(o))
    spool.close()
    new = [_obs(target, port=100 + i) for i in range(25)]
    spool = Spool(tmp_path / "spool", 2**24, segment_bytes=2**12)
    spool.open()  # the upgraded release opens the same spool and appends in its own format
    assert spool.pending_records == len(old)
    b = Batcher(writer(db).write, spool, batch_size=10, flush_interval_s=0.05)
    b.start()
    for o in new:
        b.put(o)
    await wait_for(lambda: b.pending == 0, timeout=20)
    assert await b.stop(timeout=2) == 0
    assert b.corrupt == 0
    rows = await db.pool.fetch("SELECT id, port, observed_at FROM observations")
    assert sorted(r["id"] for r in rows) == sorted(o.id for o in old + new)
    by_id = {o.id: o for o in old + new}
    assert all(r["port"] == by_id[r["id"]].port and r["observed_at"] == by_id[r["id"]].observed_at for r in rows)
    assert encode_observation(new[0])[:2] != encode_observation_v1(new[0])[:2]
