"""A first evaluation of a long chain attributes it in bulk, as a rebuild does: the same strikes come out."""

from __future__ import annotations

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
