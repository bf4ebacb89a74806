"""The spool keeps every record across reopen, reports and skips damage, and forgets only what was committed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tracker_watch.evidence.spool import Spool, SpoolLocked


def _spool(path: Path, max_bytes: int = 2**20, segment_bytes: int = 2**16) -> Spool:
    s = Spool(path, max_bytes, segment_bytes)
    s.open()
    return s


def _records(n: int) -> list[bytes]:
    return [f"record-{i:05d}-".encode() + b"x" * (i % 50) for i in range(n)]


def test_records_survive_reopen_in_order(tmp_path: Path) -> None:
    s = _spool(tmp_path)
    for r in _records(1000):
        s.append(r)
    s.close()  # (a killed process leaves the same bytes: each append is one write() to the kernel)
    s = _spool(tmp_path)
    assert s.pending_records == 1000
    got = s.read(10_000)
    assert got.records == _records(1000)
    assert got.corrupt == 0


def test_commit_moves_the_cursor_and_deletes_finished_segments(tmp_path: Path) -> None:
    s = _spool(tmp_path, segment_bytes=4096)
    for r in _records(2000):
        s.append(r)
    segments = len(list(tmp_path.glob("*.seg")))
    assert segments > 5  # rotated
    first = s.read(1500)
    s.commit(first.end, len(first.records))
    assert len(list(tmp_path.glob("*.seg"))) < segments
    assert s.pending_records == 500
    s.close()
    s = _spool(tmp_path, segment_bytes=4096)
    assert s.pending_records == 500
    assert s.read(10_000).records == _records(2000)[1500:]
    rest = s.read(10_000)
    s.commit(rest.end, len(rest.records))
    assert s.pending_records == 0
    assert s.pending_bytes == 0
    assert s.read(10).records == []


@pytest.mark.parametrize("where", ["payload", "length", "magic"])
def test_a_corrupt_record_is_reported_and_skipped_without_losing_the_rest(tmp_path: Path, where: str) -> None:
    s = _spool(tmp_path)
    records = _records(100)
    for r in records:
        s.append(r)
    s.close()
    [segment] = [p for p in tmp_path.glob("*.seg") if p.stat().st_size]
    data = bytearray(segment.read_bytes())
    start = data.index(records[40])  # payload of record 40; its 12-byte header is just before
    flip = {"payload": start + 3, "length": start - 8, "magic": start - 12}[where]
    data[flip] ^= 0xFF
    segment.write_bytes(bytes(data))
    s = _spool(tmp_path)
    got = s.read(1000)
    assert got.corrupt == 1
    assert got.records == records[:40] + records[41:]


def test_a_torn_tail_from_a_crash_is_skipped_and_writing_goes_on_in_a_new_segment(tmp_path: Path) -> None:
    s = _spool(tmp_path)
    for r in _records(10):
        s.append(r)
    s.close()
    [segment] = [p for p in tmp_path.glob("*.seg") if p.stat().st_size]
    segment.write_bytes(segment.read_bytes()[:-5])  # the last record was half written
    s = _spool(tmp_path)
    s.append(b"after the crash")
    got = s.read(100)
    assert got.records == [*_records(9), b"after the crash"]
    assert got.corrupt == 1


def test_one_spool_one_process(tmp_path: Path) -> None:
    s = _spool(tmp_path)
    with pytest.raises(SpoolLocked):
        _spool(tmp_path)
    s.close()
    _spool(tmp_path).close()
