"""Evaluation in two lanes (chunks in flight at once, each its own transaction) gives what one lane gives."""

from __future__ import annotations

import gc
from datetime import timedelta

import pytest

from tests.ledger.test_strikes import T0, World, world  # noqa: F401  (the fixture)
from tracker_watch.domain import policy as pol
from tracker_watch.ledger import strikes
from tracker_watch.ledger.db import gc_paused

# per address: the days it was seen (one work); enough subjects for several chunks of three
HISTORIES = {f"10.0.1.{n}": days for n, days in enumerate(
    [(0, 3, 8, 20), (1, 9), (2,), (0, 200, 400), (5, 12, 30, 31, 60), (0, 8, 400, 408), (7,), (3, 4, 5),
     (0, 181, 190), (10, 20, 30, 40), (100,), (1, 8, 15, 22, 29)], start=1)}


async def test_two_lanes_give_the_strikes_one_lane_gives(world: World,  # noqa: F811
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    for ip, days in HISTORIES.items():
        for day in days:
            await world.see(ip, 6881, day)
    monkeypatch.setattr(strikes, "_MIN_CHUNK", 2)  # 12 subjects: four chunks of three
    in_flight, most = 0, 0
    chunk = world.ledger._evaluate_chunk

    async def counted(subject_ids: list[int]) -> tuple[int, int]:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        try:
            return await chunk(subject_ids)
        finally:
            in_flight -= 1

    monkeypatch.setattr(world.ledger, "_evaluate_chunk", counted)
    report = await world.ledger.tick()
    assert most == 2  # the lanes did overlap
    policy = strikes.strike_policy(world.settings)
    expected = sorted(
        (s.level, ip, (s.issued_at - T0).days) for ip, days in HISTORIES.items()
        for s in pol.evaluate([pol.Incident(f"d{d}", T0 + timedelta(days=d)) for d in days], policy))
    assert sorted(await world.strikes()) == expected
    assert report.created == len(expected)
    # one lane, everything planned again from scratch: nothing to add or withdraw
    full = await world.ledger.rebuild(full=True)
    assert (full.created, full.superseded) == (0, 0)


def test_overlapping_gc_pauses_resume_the_collector_when_the_last_ends() -> None:
    assert gc.isenabled()
    first, second = gc_paused(), gc_paused()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert not gc.isenabled()  # the second lane is still building its chunk
    second.__exit__(None, None, None)
    assert gc.isenabled()
