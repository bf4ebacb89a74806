"""A full disk (a real one: a tiny tmpfs) costs the spool no record it accepted, and it drains again."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest

from tests.evidence.conftest import SmallDisk, fill
from tracker_watch.evidence.spool import Spool


def _records(n: int, tag: str = "r") -> list[bytes]:
    return [f"{tag}-{i:05d}-".encode() + b"x" * (37 * i % 300) for i in range(n)]


def _append_all(spool: Spool, records: list[bytes]) -> tuple[list[bytes], int]:
    """Append each record; returns those the spool accepted and how many it refused."""
    kept, refused = [], 0
    for r in records:
        try:
            spool.append(r)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            refused += 1
        else:
            kept.append(r)
    return kept, refused


def _drain(spool: Spool, batch: int = 50) -> list[bytes]:
    """What the batcher does: read a batch, commit it; until nothing is left."""
    out: list[bytes] = []
    while True:
        got = spool.read(batch)
        assert got.corrupt == 0
        if got.end == spool.cursor:
            return out
        out += got.records
        spool.commit(got.end, len(got.records))


def test_a_disk_filled_by_another_file_loses_no_accepted_record(small_disk: SmallDisk) -> None:
    """Regression: a record cut short by ENOSPC stayed on disk uncounted, and the records after it were
    read from the wrong offsets, so each later batch lost its last record until the next segment."""
    disk = small_disk("256k")
    spool = Spool(disk / "spool", 2**30, segment_bytes=2**20)
    spool.open()
    before, _ = _append_all(spool, _records(30, "before"))
    fill(disk / "other-file")
    during, refused = _append_all(spool, _records(200, "during"))
    assert refused > 0  # the disk was full for real
    (disk / "other-file").unlink()
    after, refused_after = _append_all(spool, _records(300, "after"))
    assert refused_after == 0
    accepted = before + during + after
    assert spool.pending_records == len(accepted)
    got = spool.read(10_000)
    assert got.corrupt == 0  # no torn record left behind
    assert got.records == accepted
    spool.close()
    spool = Spool(disk / "spool", 2**30, segment_bytes=2**20)
    spool.open()  # the same on disk
    assert spool.pending_records == len(accepted)
    assert _drain(spool) == accepted
    spool.close()


@pytest.mark.parametrize("segment_bytes", [16 * 1024, 2**20], ids=["many-segments", "one-segment"])
def test_a_spool_that_filled_the_disk_itself_drains_and_frees_it(small_disk: SmallDisk, segment_bytes: int) -> None:
    """Regression: commit() wrote the cursor file before it deleted finished segments, so on a disk the
    spool itself had filled it failed with ENOSPC every time and the spool never drained."""
    disk = small_disk("128k")
    spool = Spool(disk / "spool", 2**30, segment_bytes=segment_bytes)
    spool.open()
    accepted, refused = _append_all(spool, _records(1000))
    assert refused > 0
    assert _drain(spool) == accepted
    assert spool.pending_records == 0
    assert spool.pending_bytes == 0
    # the room came back: the spool takes records again and keeps them across a restart
    more, refused = _append_all(spool, _records(100, "more"))
    assert refused == 0
    spool.close()
    spool = Spool(disk / "spool", 2**30, segment_bytes=segment_bytes)
    spool.open()
    assert _drain(spool) == more
    spool.close()


def test_a_segment_that_cannot_be_created_leaves_no_file_descriptor_behind(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: when a new segment could not be created, the spool kept the closed fd number and later
    fsynced, wrote to and closed whatever file the process had opened under that number since."""
    spool = Spool(tmp_path / "spool", 2**30, segment_bytes=4096)
    spool.open()
    real_open = os.open

    def no_new_segment(path: Any, flags: int, mode: int = 0o777, **kw: Any) -> int:
        if str(path).endswith(".seg"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real_open(path, flags, mode, **kw)

    monkeypatch.setattr(os, "open", no_new_segment)
    accepted, refused = _append_all(spool, _records(100))
    assert refused > 0  # the first segment filled and no second one could be made
    monkeypatch.undo()
    unrelated = os.open(tmp_path / "unrelated", os.O_RDWR | os.O_CREAT, 0o600)  # likely the number just freed
    try:
        later, refused = _append_all(spool, _records(10, "later"))
        assert refused == 0  # the next append makes the segment after all
        spool.sync()
        spool.close()
        assert os.fstat(unrelated).st_size == 0  # never written to ...
        os.fsync(unrelated)  # ... nor closed by the spool
    finally:
        os.close(unrelated)
    spool = Spool(tmp_path / "spool", 2**30, segment_bytes=4096)
    spool.open()
    assert _drain(spool) == accepted + later
    spool.close()
