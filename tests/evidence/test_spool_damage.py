"""A damaged spool directory is reported and start-up goes on with every record; nothing is deleted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.evidence.conftest import SmallDisk, remount_read_only
from tracker_watch.evidence.spool import Spool, SpoolError


def _records(n: int) -> list[bytes]:
    return [f"record-{i:05d}-".encode() + b"x" * (i % 50) for i in range(n)]


def _spool(path: Path) -> Spool:
    s = Spool(path, 2**30, segment_bytes=4096)
    s.open()
    return s


def _written(path: Path, n: int = 300) -> list[bytes]:
    """A closed spool of `n` records over several segments, none committed."""
    s = _spool(path)
    for r in _records(n):
        s.append(r)
    s.close()
    assert len([p for p in path.glob("*.seg") if p.stat().st_size]) > 3
    return _records(n)


def _segments(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in path.glob("*.seg") if p.is_file()}


@pytest.mark.parametrize("cursor", [b"", b"\n", b"garbage\n", b"1\n", b"1 2 3\n", b"\xff\xfe\x00 7", b"-1 0\n",
                                    b"1 -5\n", b"999999 0\n", b"1 99999999\n", b"3 0\n",
                                    b"99999999999999999999 0\n"],
                         ids=["empty", "newline", "garbage", "one-number", "three-numbers", "binary", "negative",
                              "negative-offset", "far-segment", "past-the-end", "older-segments-left",
                              "huge"])
def test_a_damaged_cursor_is_reported_and_everything_replayed(tmp_path: Path, cursor: bytes) -> None:
    """Regression: a garbage or empty cursor crashed start-up, and `999999 0` deleted every segment. A cursor
    the segments on disk contradict is not trusted either: replaying from the start is idempotent."""
    records = _written(tmp_path)
    segments = _segments(tmp_path)
    (tmp_path / "cursor").write_bytes(cursor)
    s = _spool(tmp_path)
    assert len(s.problems) == 1
    assert "cursor" in s.problems[0]
    assert {k: v for k, v in _segments(tmp_path).items() if v} == segments  # nothing deleted
    assert s.pending_records == len(records)
    got = s.read(10_000)
    assert got.records == records
    s.commit(got.end, len(got.records))  # and it goes on: the next cursor is a good one
    s.close()
    s = _spool(tmp_path)
    assert s.problems == []
    assert s.pending_records == 0
    s.close()


def test_a_cursor_that_is_a_directory_is_reported_and_commits_go_on(tmp_path: Path) -> None:
    records = _written(tmp_path)
    (tmp_path / "cursor").mkdir()
    s = _spool(tmp_path)
    assert s.problems
    assert s.read(10_000).records == records
    first = s.read(100)
    s.commit(first.end, len(first.records))  # the position cannot be saved: it stays in memory
    assert s.pending_records == len(records) - 100
    assert s.read(10_000).records == records[100:]
    s.close()
    s = _spool(tmp_path)  # after a restart: replayed from the first segment still there, nothing lost
    assert s.problems
    replayed = s.read(10_000).records
    assert len(replayed) >= len(records) - 100
    assert replayed == records[len(records) - len(replayed):]
    s.close()


def test_a_cursor_without_segments_starts_over(tmp_path: Path) -> None:
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "cursor").write_text("999999999999 5\n")
    s = _spool(tmp_path)
    s.append(b"first")
    s.close()
    assert sorted(p.name for p in tmp_path.glob("*.seg")) == ["000000000001.seg"]
    s = _spool(tmp_path)
    assert s.read(10).records == [b"first"]
    s.close()


def test_a_valid_cursor_is_trusted(tmp_path: Path) -> None:
    records = _written(tmp_path)
    s = _spool(tmp_path)
    got = s.read(100)
    s.commit(got.end, len(got.records))
    s.close()
    s = _spool(tmp_path)
    assert s.problems == []
    assert s.read(10_000).records == records[100:]
    s.close()


def test_stray_segment_names_and_directories_are_reported_and_left_alone(tmp_path: Path) -> None:
    """Regression: `junk.seg` crashed start-up (int("junk")), and a directory named like a segment did too."""
    records = _written(tmp_path)
    strays = {"junk.seg": b"junk", "1.seg": b"not ours", "-00000000001.seg": b"", "0000000000001.seg": b"x",
              " 000000000002.seg": b"y"}
    for name, data in strays.items():
        (tmp_path / name).write_bytes(data)
    for name in ("000000000002.seg.d", "000000000099.seg", "sub.seg"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "inside").write_bytes(b"keep me")
    s = _spool(tmp_path)
    assert len(s.problems) == len(strays) + 2  # the two directories named *.seg
    assert s.read(10_000).records == records
    s.append(b"one more")  # a new segment past the directory that took number 99
    got = s.read(10_000)
    assert got.records == [*records, b"one more"]
    s.commit(got.end, len(got.records))
    s.close()
    for name, data in strays.items():
        assert (tmp_path / name).read_bytes() == data
    for name in ("000000000002.seg.d", "000000000099.seg", "sub.seg"):
        assert (tmp_path / name / "inside").read_bytes() == b"keep me"
    s = _spool(tmp_path)
    assert s.pending_records == 0
    s.close()


def test_a_read_only_spool_directory_is_a_clear_error(small_disk: SmallDisk) -> None:
    disk = small_disk("1m")
    _written(disk / "spool")
    remount_read_only(disk)
    with pytest.raises(SpoolError, match="Read-only file system"):
        _spool(disk / "spool")
    with pytest.raises(SpoolError, match="Read-only file system"):
        _spool(disk / "new")


def test_the_daemon_on_a_read_only_state_directory_says_so_in_one_line(small_disk: SmallDisk, tmp_path: Path) -> None:
    disk = small_disk("1m")
    remount_read_only(disk)
    config = tmp_path / "tw.toml"
    config.write_text(f'[node]\nstate_dir = "{disk}"\n[database]\ndsn = "postgresql://nobody@127.0.0.1:1/x"\n'
                      '[api]\nenabled = false\n[metrics]\nenabled = false\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_WATCH_")}
    done = subprocess.run([sys.executable, "-m", "tracker_watch", "--config", str(config), "run"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr + done.stdout
    assert done.stderr.startswith("tracker-watch: error: spool")
    assert "Read-only file system" in done.stderr
