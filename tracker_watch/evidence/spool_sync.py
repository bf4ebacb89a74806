"""The spool's blocking disk calls (fsync of records, of finished segments and of the directory; the cursor
file's write, fsync and rename), run in one worker thread so that the event loop never waits on a disk.

What stays on the loop, synchronous: each record's `write()` (a killed process loses none), segment creation
and deletion, and all of the spool's bookkeeping. A worker job touches only what it was handed — file
descriptors that the spool no longer closes itself (a finished segment's fd is closed by the job that fsyncs
it, the active one only by `Spool.close`, after `Flusher.drain`), a directory, a position — and reports back
to the loop, where the outcome is logged exactly as the synchronous spool logs it. One thread, first in first
out: a cursor write never overtakes an earlier one, and at most one is queued at a time, for the latest
committed position (a later commit's cursor can never be overwritten by an earlier one).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tracker_watch.evidence.spool_dir import Position

if TYPE_CHECKING:
    from tracker_watch.evidence.spool import Spool


@dataclass
class SyncWork:
    """What one group fsync covers, taken from the spool on the loop (`Spool.sync_work`)."""

    directory: Path | None = None  # a segment was created since the last sync: its name must be durable too
    active: int = -1  # the segment being appended to, if records were appended since the last sync
    retired: list[tuple[int, bool]] = field(default_factory=list)  # finished segments: (fd, dirty), closed here

    @property
    def empty(self) -> bool:
        return self.directory is None and self.active < 0 and not self.retired

    def run(self) -> None:
        """fsync all of it (a finished segment's fd is closed whatever fails); raise the first error."""
        error: OSError | None = None
        for fd, dirty in self.retired:
            try:
                if dirty:
                    os.fsync(fd)
            except OSError as exc:
                error = error or exc
            finally:
                os.close(fd)
        try:
            if self.directory is not None:
                fsync_dir(self.directory)
            if self.active >= 0:
                os.fsync(self.active)
        except OSError as exc:
            error = error or exc
        if error is not None:
            raise error


def write_cursor(directory: Path, pos: Position) -> OSError | None:
    """Write, fsync and rename the cursor file; the error, if any, for the loop to report."""
    tmp = directory / "cursor.tmp"
    try:
        with open(tmp, "w") as f:
            f.write(f"{pos.segment} {pos.offset}\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, directory / "cursor")
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        return exc
    return None


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Flusher:
    """The worker thread of one spool, driven from the event loop (`Batcher`)."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spool-fsync")
        self._cursor_job: asyncio.Future[OSError | None] | None = None
        self._cursor_next: Position | None = None  # committed while a cursor write was in the thread
        self._sync_job: asyncio.Future[None] | None = None
        self._closed = False
        spool.background = True  # from now on the spool hands finished segments and directory fsyncs over

    async def sync(self) -> None:
        """One group fsync in the thread; raises its error (after the spool was told, so it tries again)."""
        if self._sync_job is not None:  # one at a time (a cancelled caller left one running): the spool's
            await asyncio.wait([self._sync_job])  # `_in_job` names the one fd a running job holds
        work = self.spool.sync_work()
        if work.empty:
            return
        job = self._sync_job = asyncio.get_running_loop().run_in_executor(self._pool, work.run)

        def done(f: asyncio.Future[None]) -> None:  # runs even when our caller was cancelled meanwhile
            self._sync_job = None
            self.spool.sync_finished(work, failed=f.cancelled() or f.exception() is not None)
        job.add_done_callback(done)
        await asyncio.shield(job)  # cancelling the caller must not let the fds be closed under the thread

    def save_cursor(self, pos: Position) -> None:
        """The database committed up to `pos` (the spool's cursor already says so): make it durable."""
        if self._cursor_job is not None:
            self._cursor_next = pos  # written once the one in the thread is done; later commits replace it
            return
        if self._closed:  # only when `drain` was cancelled: the last one, here
            self.spool.cursor_written(write_cursor(self.spool.dir, pos))
            return
        job = self._cursor_job = asyncio.get_running_loop().run_in_executor(
            self._pool, write_cursor, self.spool.dir, pos)
        job.add_done_callback(self._cursor_done)

    def _cursor_done(self, job: asyncio.Future[OSError | None]) -> None:
        self._cursor_job = None
        try:
            error = job.result()
        except BaseException as exc:  # not raised by write_cursor; reported all the same
            error = exc if isinstance(exc, OSError) else OSError(repr(exc))
        self.spool.cursor_written(error)
        pos, self._cursor_next = self._cursor_next, None
        if pos is not None:
            self.save_cursor(pos)

    async def drain(self) -> None:
        """Until every job handed over has run and the latest committed cursor is written (or failed)."""
        while (job := self._cursor_job) is not None:
            await asyncio.wait([job])  # its done-callback (registered first, so run first) chained the next write
        await asyncio.get_running_loop().run_in_executor(self._pool, _nothing)  # behind every job queued before

    def close(self) -> None:
        self._closed = True
        self._pool.shutdown(wait=True)  # idle after `drain`
        if self._cursor_job is None and self._cursor_next is not None:
            self.save_cursor(self._cursor_next)


def _nothing() -> None:
    pass
