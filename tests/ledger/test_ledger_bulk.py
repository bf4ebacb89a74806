"""A first evaluation of a long chain attributes it in bulk, as a rebuild does: the same strikes come out."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.ledger.test_strikes import World, world  # noqa: F401  (the fixture)
from tracker_watch.ledger import strikes


async def test_a_first_tick_in_bulk_gives_what_batches_give(world: World,  # noqa: F811
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    for ip, days in (("10.0.0.5", (0, 3, 8, 20)), ("10.0.0.6", (1, 9)), ("10.0.0.7", (2,))):
        for day in days:
            await world.see(ip, 6881, day)
    monkeypatch.setattr(strikes, "REBUILD_BATCH", 3)  # so this short chain counts as a long backlog
    report = await world.ledger.tick()
    assert (report.attributed, report.created) == (7, 6)
    assert await world.strikes() == [(1, "10.0.0.5", 0), (2, "10.0.0.5", 8), (3, "10.0.0.5", 20),
                                     (1, "10.0.0.6", 1), (2, "10.0.0.6", 9), (1, "10.0.0.7", 2)]
    # the indexes are back (the next, ordinary tick relies on the primary key) and nothing changes
    assert (await world.ledger.tick()).created == 0
    await world.see("10.0.0.7", 6881, 10)
    assert (await world.ledger.tick()).created == 1
    assert (await world.ledger.rebuild()).created == 0


def _scans(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan] + [s for p in plan.get("Plans", []) for s in _scans(p)]


async def test_policy_inputs_come_from_the_index_alone_after_a_rebuild(world: World) -> None:  # noqa: F811
    """A tick reads its subjects' inputs from the covering index (migration 0016), not from attributions
    scattered over the table: the plan's shape, since a timing would say nothing on a busy machine. The
    planner would scan these few rows sequentially, so that is switched off to see which index serves."""
    for ip, day in (("10.0.0.5", 0), ("10.0.0.5", 8), ("10.0.0.6", 1)):
        await world.see(ip, 6881, day)
    await world.ledger.rebuild()  # fills attributions in bulk, then vacuums them
    ids = [r["id"] for r in await world.db.pool.fetch("SELECT id FROM subjects ORDER BY id")]
    async with world.db.pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off")
        plan = json.loads(await conn.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) " + strikes._INPUTS, ids, min(ids),
                                              max(ids)))[0]["Plan"]
    scans = [s for s in _scans(plan) if s.get("Relation Name") == "attributions"]
    # (heap fetches are not asserted: a transaction of another session on the server, as other tests run,
    # keeps VACUUM from marking fresh rows all-visible; the scan then visits the heap for those rows only)
    assert [(s["Node Type"], s["Index Name"]) for s in scans] == [("Index Only Scan", "attributions_subject")]
