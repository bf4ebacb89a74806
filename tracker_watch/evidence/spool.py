"""The observation spool: a write-ahead log on local disk between the collector and PostgreSQL.

Every observation is appended here first and read back from here by the writer, so the database can be
away for as long as the disk holds out and a crash at any moment loses nothing:

* records go to the kernel with one `write()` each as they are made (a killed process loses none),
  and are fsynced in groups every `spool.fsync_interval_s` (what a power cut can take); in the daemon the
  fsyncs run in one worker thread, never on the event loop (`spool_sync.py`, `background`);
* a record is `MAGIC | length | crc32 | payload`; the reader checks all three, reports a damaged
  record and resynchronises on the next valid one, so one bad record never costs the rest;
* the committed position (segment, offset) is written to `cursor` (write, fsync, rename) only after the
  database committed the batch, and never backwards; a crash in between replays the batch, which the
  writer drops by observation id, so replay is idempotent;
* segments wholly behind the cursor are deleted; a new segment is started on every open, so the torn
  tail of a crash is never appended to.

A full disk costs only the records it refuses: a record the disk took in part is cut off again (a failed
append leaves no torn bytes), the segment is closed so that it can be deleted once committed, and a commit
deletes finished segments before it writes the cursor file (the room for the cursor comes from them).
A damaged start-up state (a cursor that is unreadable or that the segments on disk contradict, a stray
`*.seg` name or directory) is reported and costs no data: the spool replays every segment there is
(replay is idempotent) and never deletes at start-up; only a directory it cannot write stops it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

from tracker_watch import log
from tracker_watch.evidence.spool_dir import Position, check_cursor, read_cursor, scan, segment_path
from tracker_watch.evidence.spool_records import MAGIC, parse
from tracker_watch.evidence.spool_records import record as _record
from tracker_watch.evidence.spool_sync import SyncWork, fsync_dir, write_cursor

__all__ = ["MAGIC", "Position", "ReadResult", "Spool", "SpoolError", "SpoolLocked"]

_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)

_log = log.get("tracker_watch.evidence")


class SpoolError(RuntimeError):
    """The spool cannot be used: its directory cannot be written, or another process holds it."""


class SpoolLocked(SpoolError):
    """Another process holds this spool (two daemons on one state directory)."""


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
        self._segments: dict[int, int] = {}  # segment number → size in bytes (whole records only)
        self._fd = -1  # the segment being appended to, or -1 when none is open (its creation failed)
        self._active = -1
        self._highest = 0  # highest segment number in use, stray directories with a segment's name included
        self._lock_fd = -1
        self._dirty = False
        self._cursor_unsaved = False
        # background (set by spool_sync.Flusher): the blocking fsyncs are left to its worker thread — a finished
        # segment's fd goes to `_retired` (fsynced and closed there), a new segment's name to `_dir_unsynced`
        self.background = False
        self._retired: dict[int, tuple[int, bool]] = {}  # segment number → (fd, dirty)
        self._dir_unsynced = False
        self._in_job = -1  # the active fd a running background fsync holds: closed by no one until it is done
        self.pending_records = 0  # appended and not yet committed (counted at open, kept since)
        self.problems: list[str] = []  # damage found at open, each also logged as `spool_damaged`

    # --- life cycle ------------------------------------------------------------------------------------
    def open(self) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._lock_fd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:  # read-only, not a directory, no permission: say so in one line
            raise SpoolError(f"spool {self.dir} cannot be used: {exc.strerror or exc}") from None
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            self._lock_fd = -1
            raise SpoolLocked(f"spool {self.dir} is in use by another process") from None
        try:
            self._load()
        except OSError as exc:
            self.close()
            raise SpoolError(f"spool {self.dir} cannot be used: {exc.strerror or exc}") from None
        except BaseException:
            self.close()
            raise

    def _load(self) -> None:
        self._segments, highest, self.problems = scan(self.dir)
        self.cursor, damage = check_cursor(read_cursor(self.dir), self._segments)
        if damage:
            self.problems.append(damage)
        for problem in self.problems:
            _log.error("spool_damaged", spool=str(self.dir), problem=problem)
        self._highest = max(highest, self.cursor.segment)  # a new segment never takes a stray one's name
        self.pending_records = self._count_from(self.cursor)
        try:
            self._start_segment()
        except OSError as exc:
            if exc.errno not in _DISK_FULL:
                raise
            # what is spooled can still drain (and make room); the next append tries again
            _log.error("spool_disk_full", spool=str(self.dir), error=exc.strerror)

    def close(self) -> None:
        """fsync and close everything, here and now (after `Flusher.drain`: no worker job holds an fd)."""
        self.background = True
        try:
            self._close_active()
            self.background = False
            self.sync()
        finally:
            self.background = False
            if self._lock_fd >= 0:
                os.close(self._lock_fd)
                self._lock_fd = -1

    # --- writing ---------------------------------------------------------------------------------------
    @property
    def pending_bytes(self) -> int:
        return sum(size for number, size in self._segments.items() if number >= self.cursor.segment) \
            - (self.cursor.offset if self.cursor.segment in self._segments else 0)

    def append(self, payload: bytes) -> None:
        record = _record(payload)
        size = self._segments[self._active] if self._fd >= 0 else 0
        if self._fd < 0 or (size > 0 and size + len(record) > self.segment_bytes):
            self._start_segment()
            size = self._segments[self._active]
        try:
            view = memoryview(record)
            while view:  # a regular file takes it whole unless the disk is full; loop for the rest anyway
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError:
            self._cut_back(size)
            raise
        self._segments[self._active] = size + len(record)
        self.pending_records += 1
        self._dirty = True

    def _cut_back(self, size: int) -> None:
        """After a failed append: drop what the disk took of the record, so the segment holds whole records
        only, and move on to a new segment, so that this one can be deleted once it is committed."""
        try:
            os.ftruncate(self._fd, size)
        except OSError:  # the torn bytes stay past `size`: never read now, skipped as damage after a restart
            self._close_active()
            return
        if size > 0:
            with contextlib.suppress(OSError):  # no room even for an empty file: the next append tries again
                self._start_segment()

    def sync(self) -> None:
        """The group fsync, in the calling thread."""
        work = self.sync_work()
        try:
            work.run()
        except OSError:
            self.sync_finished(work, failed=True)
            raise
        self.sync_finished(work, failed=False)

    def sync_work(self) -> SyncWork:
        """What the next group fsync covers; from here on it is the job's (its finished fds too)."""
        work = SyncWork(self.dir if self._dir_unsynced else None,
                        self._fd if self._dirty and self._fd >= 0 else -1, list(self._retired.values()))
        self._retired, self._dir_unsynced, self._dirty, self._in_job = {}, False, False, work.active
        return work

    def sync_finished(self, work: SyncWork, failed: bool) -> None:
        """A failed job is tried again by the next (finished segments' fds are closed whatever happened)."""
        self._in_job = -1
        if failed:
            self._dir_unsynced = self._dir_unsynced or work.directory is not None
            self._dirty = self._dirty or (work.active >= 0 and self._fd >= 0)

    def _start_segment(self) -> None:
        self._close_active()
        number = self._highest + 1
        fd = os.open(self._path(number), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            size = os.fstat(fd).st_size
            if self.background:
                self._dir_unsynced = True  # fsynced by the next group fsync, before any record in it is
            else:
                fsync_dir(self.dir)
        except OSError:
            os.close(fd)
            raise
        self._fd, self._active, self._highest = fd, number, number
        self._segments[number] = size

    def _close_active(self) -> None:
        """fsync and close the segment being written (in background: leave both to the next group fsync);
        the fd is forgotten first, whatever fails."""
        fd, number, self._fd, self._active = self._fd, self._active, -1, -1
        if fd < 0:
            return
        if self.background:
            self._retired[number] = (fd, self._dirty)
            self._dirty = False
            return
        try:
            if self._dirty:
                os.fsync(fd)
                self._dirty = False
        finally:
            os.close(fd)

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
            got, used, bad = parse(data, max_records - len(records))
            records += got
            corrupt += bad
            pos = Position(number, offset + used)
            if len(records) >= max_records:
                break
        return ReadResult(records, pos, corrupt)

    def commit(self, pos: Position, records: int) -> None:
        """Everything before `pos` is in the database: drop finished segments and move the cursor."""
        self.advance(pos, records)
        self.cursor_written(write_cursor(self.dir, pos))

    def advance(self, pos: Position, records: int) -> None:
        """`commit` but for the cursor file, which the caller writes (`write_cursor`, in the Flusher's thread)."""
        if pos < self.cursor:
            raise ValueError(f"the cursor moves forward only: {pos} is behind {self.cursor}")
        self.cursor = pos
        self.pending_records = max(0, self.pending_records - records)
        # segments first: they are in the database whatever the cursor file says (a crash before it is
        # written replays from an older position, idempotently), and on a disk the spool filled itself
        # they are what makes room for the cursor file
        for number in [n for n in self._segments if n < pos.segment and n != self._active]:
            try:
                self._path(number).unlink()
            except FileNotFoundError:
                pass
            except OSError:
                continue  # kept; the next commit tries again
            del self._segments[number]
            if (retired := self._retired.get(number)) is not None:  # in the database: no fsync needed
                if retired[0] == self._in_job:
                    self._retired[number] = (retired[0], False)  # the thread fsyncs it now: its next job closes it
                else:
                    del self._retired[number]
                    os.close(retired[0])  # now: a deleted file's room is freed only when it is closed

    def cursor_written(self, exc: OSError | None) -> None:
        """Report how writing the cursor file went (once per failing stretch, as before)."""
        if exc is not None:  # the position stays in memory; a restart before the next save replays more
            if not self._cursor_unsaved:
                _log.error("spool_cursor_not_saved", spool=str(self.dir), error=exc.strerror or str(exc))
            self._cursor_unsaved = True
            return
        if self._cursor_unsaved:
            _log.info("spool_cursor_saved", spool=str(self.dir))
            self._cursor_unsaved = False

    def _count_from(self, pos: Position) -> int:
        count = 0
        while True:
            result = self.read(100_000, pos)
            count += len(result.records)
            if result.end == pos:
                return count
            pos = result.end

    def _path(self, number: int) -> Path:
        return segment_path(self.dir, number)

