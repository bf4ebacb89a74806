"""The observation spool: a write-ahead log on local disk between the collector and PostgreSQL.

Every observation is appended here first and read back from here by the writer, so the database can be
away for as long as the disk holds out and a crash at any moment loses nothing:

* records go to the kernel with one `write()` each as they are made (a killed process loses none),
  and are fsynced in groups every `spool.fsync_interval_s` (what a power cut can take);
* a record is `MAGIC | length | crc32 | payload`; the reader checks all three, reports a damaged
  record and resynchronises on the next valid one, so one bad record never costs the rest;
* the committed position (segment, offset) is written to `cursor` (write, fsync, rename) only after the
  database committed the batch; a crash in between replays the batch, which the writer drops by
  observation id, so replay is idempotent;
* segments wholly behind the cursor are deleted; a new segment is started on every open, so the torn
  tail of a crash is never appended to.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"TWs1"
_HEADER = struct.Struct(">4sII")  # magic, payload length, crc32 of payload
MAX_RECORD = 1 << 20  # an observation is < 2 KiB; anything longer is damage


class SpoolLocked(RuntimeError):
    """Another process holds this spool (two daemons on one state directory)."""


@dataclass(frozen=True, order=True)
class Position:
    segment: int
    offset: int


@dataclass
class ReadResult:
    records: list[bytes]
    end: Position
    corrupt: int  # damaged records (or torn tails) skipped on the way


class Spool:
    def __init__(self, directory: Path, max_bytes: int, segment_bytes: int = 16 * 2**20) -> None:
        self.dir = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.cursor = Position(0, 0)
        self._segments: dict[int, int] = {}  # segment number → size in bytes
        self._fd = -1
        self._lock_fd = -1
        self._dirty = False
        self.pending_records = 0  # appended and not yet committed (counted at open, kept since)

    # --- life cycle ------------------------------------------------------------------------------------
    def open(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock_fd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise SpoolLocked(f"spool {self.dir} is in use by another process") from None
        self.cursor = self._read_cursor()
        for path in self.dir.glob("*.seg"):
            number = int(path.stem)
            if number < self.cursor.segment:
                path.unlink()  # committed before a crash that came before its deletion
            else:
                self._segments[number] = path.stat().st_size
        self.pending_records = self._count_from(self.cursor)
        self._start_segment(max(self._segments, default=self.cursor.segment) + 1)

    def close(self) -> None:
        if self._fd >= 0:
            self.sync()
            os.close(self._fd)
            self._fd = -1
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    # --- writing ---------------------------------------------------------------------------------------
    @property
    def pending_bytes(self) -> int:
        return sum(size for number, size in self._segments.items() if number >= self.cursor.segment) \
            - (self.cursor.offset if self.cursor.segment in self._segments else 0)

    def append(self, payload: bytes) -> None:
        record = _HEADER.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload
        active = max(self._segments)
        if self._segments[active] + len(record) > self.segment_bytes and self._segments[active] > 0:
            active = self._start_segment(active + 1)
        view = memoryview(record)
        while view:  # a regular file takes it whole unless the disk is full; loop for the rest anyway
            written = os.write(self._fd, view)
            view = view[written:]
        self._segments[active] += len(record)
        self.pending_records += 1
        self._dirty = True

    def sync(self) -> None:
        if self._dirty and self._fd >= 0:
            os.fsync(self._fd)
            self._dirty = False

    def _start_segment(self, number: int) -> int:
        if self._fd >= 0:
            os.fsync(self._fd)
            os.close(self._fd)
        self._fd = os.open(self._path(number), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._segments[number] = os.fstat(self._fd).st_size
        _fsync_dir(self.dir)
        return number

    # --- reading and committing ------------------------------------------------------------------------
    def read(self, max_records: int, start: Position | None = None) -> ReadResult:
        """Up to `max_records` valid records from `start` (default: the cursor) on, in order."""
        pos = start or self.cursor
        records: list[bytes] = []
        corrupt = 0
        for number in sorted(n for n in self._segments if n >= pos.segment):
            offset = pos.offset if number == pos.segment else 0
            size = self._segments[number]
            if offset >= size:
                pos = Position(number, size)
                continue
            with open(self._path(number), "rb") as f:
                f.seek(offset)
                data = f.read(size - offset)
            got, used, bad = _parse(data, max_records - len(records))
            records += got
            corrupt += bad
            pos = Position(number, offset + used)
            if len(records) >= max_records:
                break
        return ReadResult(records, pos, corrupt)

    def commit(self, pos: Position, records: int) -> None:
        """Everything before `pos` is in the database: move the cursor and drop finished segments."""
        tmp = self.dir / "cursor.tmp"
        with open(tmp, "w") as f:
            f.write(f"{pos.segment} {pos.offset}\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.dir / "cursor")
        self.cursor = pos
        self.pending_records = max(0, self.pending_records - records)
        active = max(self._segments)
        for number in [n for n in self._segments if n < pos.segment and n != active]:
            with contextlib.suppress(FileNotFoundError):
                self._path(number).unlink()
            del self._segments[number]

    def _read_cursor(self) -> Position:
        try:
            segment, offset = (self.dir / "cursor").read_text().split()
            return Position(int(segment), int(offset))
        except FileNotFoundError:
            return Position(0, 0)

    def _count_from(self, pos: Position) -> int:
        count = 0
        while True:
            result = self.read(100_000, pos)
            count += len(result.records)
            if result.end == pos:
                return count
            pos = result.end

    def _path(self, number: int) -> Path:
        return self.dir / f"{number:012d}.seg"


def _parse(data: bytes, limit: int) -> tuple[list[bytes], int, int]:
    """Valid records at the start of `data` (at most `limit`), bytes consumed, damaged records skipped."""
    out: list[bytes] = []
    i, bad, n = 0, 0, len(data)
    while i < n and len(out) < limit:
        if n - i < _HEADER.size:
            return out, n, bad + 1  # a torn header at the end of a finished segment
        magic, length, crc = _HEADER.unpack_from(data, i)
        end = i + _HEADER.size + length
        if magic == MAGIC and length <= MAX_RECORD and end <= n and zlib.crc32(data[i + _HEADER.size:end]) == crc:
            out.append(data[i + _HEADER.size:end])
            i = end
            continue
        bad += 1  # damaged: resynchronise on the next MAGIC that starts a valid record
        i = _next_valid(data, i + 1)
    return out, i, bad


def _next_valid(data: bytes, start: int) -> int:
    i = data.find(MAGIC, start)
    while i >= 0:
        if len(data) - i >= _HEADER.size:
            _, length, crc = _HEADER.unpack_from(data, i)
            end = i + _HEADER.size + length
            if length <= MAX_RECORD and end <= len(data) and zlib.crc32(data[i + _HEADER.size:end]) == crc:
                return i
        i = data.find(MAGIC, i + 1)
    return len(data)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
