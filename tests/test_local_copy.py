"""The node's local copy (swarm/local_copy.py): checksummed, atomic, and a start from it that never crashes."""

from __future__ import annotations

import os
from pathlib import Path

from tests.conftest import SettingsFactory
from tests.helpers import Walks
from tracker_watch import metrics
from tracker_watch.daemon import Daemon
from tracker_watch.node_targets import CopyKeeper
from tracker_watch.swarm.local_copy import LocalCopy
from tracker_watch.swarm.targets import WatchedTarget

DEAD_DSN = "postgresql://postgres@127.0.0.1:1/test"  # nothing listens on port 1: the database is away


def target(i: int, info: bytes | None = None, revision: int = 1) -> WatchedTarget:
    return WatchedTarget(id=i, infohash_v1=bytes([i]) * 20, infohash_v2=None, trackers=("http://127.0.0.1:9/a",),
                         status="active", info=info, revision=revision)


def test_round_trip_and_damage_costs_only_what_is_damaged(tmp_path: Path) -> None:
    copy = LocalCopy(tmp_path / "copy")
    targets = {1: target(1, b"d4:name1:xe"), 2: target(2), 3: target(3)}
    targets[3] = WatchedTarget(**{**targets[3].__dict__, "peer_hints": ("127.0.0.9:6881", "[::1]:6882")})
    copy.save(frozenset({1, 2, 3, 4}), targets)
    loaded = LocalCopy(tmp_path / "copy").load()
    assert loaded.owned == {1, 2, 3, 4}
    assert loaded.targets == targets
    assert not loaded.problems

    raw = bytearray((tmp_path / "copy" / "targets" / "2").read_bytes())
    raw[-3] ^= 0x01  # one flipped bit
    (tmp_path / "copy" / "targets" / "2").write_bytes(bytes(raw))
    (tmp_path / "copy" / "targets" / "3").unlink()
    loaded = LocalCopy(tmp_path / "copy").load()
    assert set(loaded.targets) == {1}
    assert [p.split(":")[0] for p in loaded.problems] == ["target 2", "target 3"]

    (tmp_path / "copy" / "leases").write_bytes(b"TWc1 00\n{}")
    loaded = LocalCopy(tmp_path / "copy").load()
    assert not loaded.owned
    assert not loaded.targets
    assert loaded.problems
    assert loaded.problems[0].startswith("leases")


def test_only_changed_targets_are_rewritten_and_gone_ones_removed(tmp_path: Path) -> None:
    copy = LocalCopy(tmp_path / "copy")
    copy.save(frozenset({1, 2}), {1: target(1), 2: target(2)})
    first = (tmp_path / "copy" / "targets" / "1").stat().st_mtime_ns
    os.utime(tmp_path / "copy" / "targets" / "1", ns=(first - 10**9, first - 10**9))
    copy.save(frozenset({1}), {1: target(1)})
    assert (tmp_path / "copy" / "targets" / "1").stat().st_mtime_ns == first - 10**9  # unchanged: not written
    assert not (tmp_path / "copy" / "targets" / "2").exists()
    copy.save(frozenset({1}), {1: target(1, revision=2)})
    assert LocalCopy(tmp_path / "copy").load().targets[1].revision == 2


async def test_no_copy_and_no_database_starts_with_nothing(make_settings: SettingsFactory) -> None:
    daemon = Daemon(make_settings(database={"dsn": DEAD_DSN}, api={"enabled": True}))
    await daemon.start()
    try:
        assert daemon.started.is_set()
        assert not daemon.db.connected
        assert daemon.engine is not None
        assert not daemon.engine.swarms
        assert metrics.LOCAL_COPY_TARGETS._value.get() == 0
        assert daemon.api is None  # the API starts once the primary answers
    finally:
        await daemon.stop()


async def test_a_damaged_copy_starts_what_still_verifies(make_settings: SettingsFactory) -> None:
    settings = make_settings(database={"dsn": DEAD_DSN})
    copy = LocalCopy(settings.node.state_dir / "local-copy")
    copy.save(frozenset({1, 2}), {1: target(1), 2: target(2)})
    path = settings.node.state_dir / "local-copy" / "targets" / "2"
    path.write_bytes(path.read_bytes()[:-5])  # torn
    daemon = Daemon(settings)
    await daemon.start()
    try:
        assert daemon.engine is not None
        assert set(daemon.engine.swarms) == {target(1).key}
        assert metrics.LOCAL_COPY_TARGETS._value.get() == 1
    finally:
        await daemon.stop()


async def test_the_copy_keeper_skips_a_pass_that_changed_nothing_without_reading_the_rows(tmp_path: Path) -> None:
    """The daemon tells the keeper after every watchlist pass (every poll). Comparing sorted (id, revision) pairs of
    every row each time was O(n log n) per poll; the watchlist's row version says whether anything changed."""
    keeper = CopyKeeper(LocalCopy(tmp_path / "copy"))
    rows = {i: WatchedTarget(id=i, infohash_v1=i.to_bytes(20, "big"), infohash_v2=None, trackers=(),
                             status="active", info=None, revision=1) for i in range(1, 3001)}
    owned = frozenset(rows)
    keeper.changed(owned, rows, 1)
    await keeper.close()
    assert len(LocalCopy(tmp_path / "copy").load().targets) == 3000
    watched = Walks(rows)
    for _ in range(100):  # polls that changed nothing
        keeper.changed(owned, watched, 1)
    assert watched.walks == 0
    del watched[3000]  # a target gone: the watchlist bumped its version
    keeper.changed(frozenset(watched), watched, 2)
    await keeper.close()
    loaded = LocalCopy(tmp_path / "copy").load()
    assert len(loaded.targets) == 2999
    assert 3000 not in loaded.owned
