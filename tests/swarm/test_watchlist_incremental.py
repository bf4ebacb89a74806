"""The watchlist regroups only the swarms whose rows changed, and keeps started swarms out of the garbage
collector's walks. (Every poll once rebuilt every group from every row: ~10 % of a busy node's event loop at
5,000 swarms; full collections over ~1 M swarm objects stopped the loop for up to a second each.)"""

from __future__ import annotations

import gc
import os
from typing import Any

import pytest

from tests.conftest import SettingsFactory
from tests.helpers import wait_for
from tracker_watch.daemon import Daemon
from tracker_watch.domain.targets import parse_target
from tracker_watch.ledger.db import Database
from tracker_watch.ledger.targets import TargetStore
from tracker_watch.swarm import watchlist as watchlist_module
from tracker_watch.swarm.heap import HeapKeeper


async def test_a_poll_regroups_only_the_swarms_that_changed(make_settings: SettingsFactory, db: Database,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[str] = []

    class CountedGroup(watchlist_module._Group):
        def __init__(self, spec: Any, refs: Any) -> None:
            super().__init__(spec, refs)
            built.append(spec.key)

    monkeypatch.setattr(watchlist_module, "_Group", CountedGroup)
    store = TargetStore(db.pool)
    for _ in range(20):
        await store.register(parse_target("magnet:?xt=urn:btih:" + os.urandom(20).hex()), "Studio", "Film",
                             actor="test")
    daemon = Daemon(make_settings())
    await daemon.start()
    try:
        assert daemon.engine is not None
        assert daemon.watchlist is not None
        engine, watchlist = daemon.engine, daemon.watchlist
        assert len(engine.swarms) == 20
        built.clear()
        new, _ = await store.register(parse_target("magnet:?xt=urn:btih:" + os.urandom(20).hex()), "Studio B",
                                      "Film 2", actor="test")
        polls = watchlist._polls
        await wait_for(lambda: new.key in engine.swarms and watchlist._polls >= polls + 3, timeout=60)
        assert set(built) == {new.key}  # the 20 unchanged swarms were not rebuilt on any of those polls
        assert new.key in watchlist.groups
        assert len(watchlist.groups) == 21
        # a second holder of the same swarm joins its group (and only that group is rebuilt)
        built.clear()
        again, _ = await store.register(parse_target(f"magnet:?xt=urn:btih:{new.key}"), "Studio C", "Film 3",
                                        actor="test")
        await wait_for(lambda: len(watchlist.groups[new.key].refs) == 2, timeout=60)
        assert set(built) == {new.key}
        # set aside (paused): it leaves the group, the swarm runs on for the other holder
        assert await store.set_status(again.id, "paused", actor="test")
        await wait_for(lambda: len(watchlist.groups[new.key].refs) == 1, timeout=60)
        assert await store.set_status(new.id, "paused", actor="test")
        await wait_for(lambda: new.key not in engine.swarms, timeout=60)
        assert new.key not in watchlist.groups
        assert len(watchlist.groups) == 20
    finally:
        await daemon.stop()


def test_started_swarms_are_frozen_and_handed_back_once_many_stopped() -> None:
    heap = HeapKeeper(freeze_every=8, stops_before_unfreeze=4)
    gc.unfreeze()
    try:
        for _ in range(7):
            heap.started()
        assert gc.get_freeze_count() == 0
        heap.started()
        assert gc.get_freeze_count() > 0
        assert heap.freezes == 1
        for _ in range(3):
            heap.stopped()
        assert gc.get_freeze_count() > 0
        heap.stopped()  # enough stopped swarms may sit frozen in cycles: the collector gets everything back
        assert gc.get_freeze_count() == 0
        assert heap.unfreezes == 1
        heap.started()
        heap.settle()  # 1 < 8 // 4: not worth a freeze yet
        assert gc.get_freeze_count() == 0
        heap.started()
        heap.settle()
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


async def test_regrouped_swarms_are_frozen_too(make_settings: SettingsFactory, db: Database) -> None:
    """A swarm regrouped after it started (its metadata stored, another holder joined) builds new long-lived
    objects: the new group and spec, and what the engine built when the metadata came. Only starts counted
    towards a freeze, so at 10,000 swarms those objects stayed in the collector's walks: one full collection of
    726 ms walked 573,365 of them (BENCHMARKS.md, capacity under load, fifth pass). Updates count now."""
    store = TargetStore(db.pool)
    keys = []
    for _ in range(12):
        row, _ = await store.register(parse_target("magnet:?xt=urn:btih:" + os.urandom(20).hex()), "Studio",
                                      "Film", actor="test")
        keys.append(row.key)
    daemon = Daemon(make_settings())
    await daemon.start()
    try:
        assert daemon.watchlist is not None
        watchlist = daemon.watchlist
        assert len(watchlist.groups) == 12
        watchlist.heap = heap = HeapKeeper(freeze_every=8)
        for key in keys:  # a second holder joins every swarm: twelve updates, no start
            await store.register(parse_target(f"magnet:?xt=urn:btih:{key}"), "Studio B", "Film B", actor="test")
        await wait_for(lambda: all(len(watchlist.groups[k].refs) == 2 for k in keys), timeout=60)
        assert heap.freezes >= 1
    finally:
        await daemon.stop()
        gc.unfreeze()
