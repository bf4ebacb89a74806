"""The spool's fsyncs and cursor writes run in one worker thread: a stuck disk never holds the event loop, the
cursor file only moves forward (the latest commit wins), and no fd is closed while the thread fsyncs it.

The disk is made to hang by replacing `os.fsync` (the OS call, nothing of ours) with one that waits on a gate
the test opens from the loop; it gives up after a safety deadline, which only code that fsyncs on the loop
itself ever reaches (then the gate could never be opened in time)."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import wait_for
from tests.ledger.test_observations import _obs, _target, writer
from tracker_watch.evidence.batcher import Batcher
from tracker_watch.evidence.spool import Position, Spool
from tracker_watch.evidence.spool_dir import read_cursor
from tracker_watch.evidence.spool_sync import Flusher
from tracker_watch.ledger.db import Database
from tracker_watch.ledger.observations import ObservationStore

SAFETY_S = 20.0  # a deadline against a hang, never a speed claim


class StuckDisk:
    """`os.fsync` of a spool segment or cursor file (`kinds`) waits until `release()`."""

    def __init__(self, root: Path) -> None:
        self.root = str(root)
        self.kinds = (".seg", "/cursor.tmp")
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.on_loop_thread: list[str] = []  # fsyncs of ours made by the thread that runs the event loop
        self.gave_up = 0
        self.fd_changed: list[int] = []  # an fd that pointed elsewhere (closed, reused) after the wait
        self.loop_thread = threading.get_ident()
        self._real = os.fsync

    def fsync(self, fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        if path.startswith(self.root) and path.endswith(self.kinds):
            inode = os.fstat(fd).st_ino
            if threading.get_ident() == self.loop_thread:
                self.on_loop_thread.append(path)
            self.entered.set()
            if not self.gate.wait(SAFETY_S):
                self.gave_up += 1
                self.gate.set()  # once is enough to fail the test: do not make it slower than that
            try:
                if os.fstat(fd).st_ino != inode:
                    self.fd_changed.append(fd)
            except OSError:  # closed under us
                self.fd_changed.append(fd)
        self._real(fd)

    def release(self) -> None:
        self.gate.set()


@pytest.fixture
def stuck(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[StuckDisk]:
    disk = StuckDisk(tmp_path / "spool")
    monkeypatch.setattr(os, "fsync", disk.fsync)
    yield disk
    disk.release()


async def test_a_stuck_fsync_does_not_hold_the_loop(db: Database, tmp_path: Path, stuck: StuckDisk) -> None:
    target = await _target(db)
    spool = Spool(tmp_path / "spool", 2**24, segment_bytes=2**16)
    spool.open()
    b = Batcher(writer(db).write, spool, batch_size=10, flush_interval_s=30, fsync_interval_s=0.01)
    b.start()
    for i in range(5):
        b.put(_obs(target, port=i + 1))
    await wait_for(stuck.entered.is_set, timeout=SAFETY_S * 2)  # the group fsync is in the disk now
    ticks = 0

    def tick() -> None:
        nonlocal ticks
        ticks += 1
    asyncio.get_running_loop().call_soon(tick)
    for i in range(5, 15):  # a batch fills, is written to PostgreSQL and committed: all on the loop
        b.put(_obs(target, port=i + 1))
    await wait_for(lambda: b.written == 15, timeout=SAFETY_S * 2)
    assert ticks == 1
    assert not stuck.gate.is_set()
    assert stuck.on_loop_thread == []  # all that while, the fsync was stuck
    assert spool.cursor > Position(0, 0)
    assert read_cursor(spool.dir) == Position(0, 0)  # file behind, never ahead
    stuck.release()
    assert await b.stop(timeout=5) == 0
    assert stuck.gave_up == 0
    assert stuck.on_loop_thread == []
    assert read_cursor(spool.dir) == spool.cursor  # stop wrote the last cursor before it returned
    assert await ObservationStore(db.pool).count() == 15
    again = Spool(tmp_path / "spool", 2**24)
    again.open()
    assert again.pending_records == 0
    assert again.problems == []
    again.close()


async def test_a_later_cursor_is_never_overwritten_by_an_earlier_write(tmp_path: Path, stuck: StuckDisk,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    spool = Spool(tmp_path / "spool", 2**24, segment_bytes=2**16)
    spool.open()
    for i in range(30):
        spool.append(f"record-{i}".encode())
    written: list[Position] = []
    real_replace = os.replace

    def replace(src: str | Path, dst: str | Path) -> None:
        real_replace(src, dst)
        if Path(dst).name == "cursor":
            position = read_cursor(Path(dst).parent)
            assert isinstance(position, Position)
            written.append(position)
    monkeypatch.setattr(os, "replace", replace)
    flusher = Flusher(spool)
    batches = [spool.read(10), ]
    batches += [spool.read(10, batches[-1].end)]
    batches += [spool.read(10, batches[-1].end)]
    spool.advance(batches[0].end, 10)
    flusher.save_cursor(batches[0].end)  # in the thread, stuck in its fsync
    await wait_for(stuck.entered.is_set, timeout=SAFETY_S * 2)
    for batch in batches[1:]:  # committed meanwhile
        spool.advance(batch.end, 10)
        flusher.save_cursor(batch.end)
    stuck.release()
    await flusher.drain()
    flusher.close()
    assert written == [batches[0].end, batches[2].end]  # the one in the thread, then only the latest
    assert read_cursor(spool.dir) == batches[2].end == spool.cursor
    assert stuck.on_loop_thread == []
    assert stuck.gave_up == 0
    with pytest.raises(ValueError, match="forward only"):
        spool.advance(batches[1].end, 0)  # never backwards
    spool.close()


async def test_no_fd_is_closed_while_the_thread_fsyncs_it(tmp_path: Path, stuck: StuckDisk) -> None:
    """The active segment's fsync is stuck while the loop finishes that segment and commits past it (which
    deletes it): the fd stays open until the thread is done with it, then is closed; none leaks."""
    spool = Spool(tmp_path / "spool", 2**24, segment_bytes=4096)
    spool.open()
    flusher = Flusher(spool)
    spool.append(b"x" * 1000)
    syncing = asyncio.create_task(flusher.sync())
    await wait_for(stuck.entered.is_set, timeout=SAFETY_S * 2)
    for _ in range(20):  # five segments
        spool.append(b"y" * 1000)
    got = spool.read(100)
    spool.advance(got.end, len(got.records))  # deletes the first segments, the one in the thread among them
    flusher.save_cursor(got.end)
    held = _spool_fds(spool.dir)
    assert any(path.endswith("000000000001.seg (deleted)") for path in held)  # kept open for the thread
    stuck.release()
    await syncing
    await flusher.sync()  # the next group fsync closes it
    await flusher.drain()
    flusher.close()
    assert not any("000000000001.seg" in path for path in _spool_fds(spool.dir))
    spool.close()
    assert _spool_fds(spool.dir) == []
    assert stuck.fd_changed == []
    assert stuck.on_loop_thread == []
    assert stuck.gave_up == 0


async def test_a_failing_fsync_in_the_thread_is_reported_once_and_retried(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from tracker_watch.evidence import batcher as batcher_module
    spool = Spool(tmp_path / "spool", 2**24, segment_bytes=2**16)
    spool.open()
    real_fsync = os.fsync
    calls: list[str] = []

    def failing(fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        if path.endswith(".seg"):
            calls.append(path)
            if len(calls) <= 2:
                raise OSError(28, "No space left on device")
        real_fsync(fd)
    monkeypatch.setattr(os, "fsync", failing)
    errors: list[dict[str, object]] = []

    class Capture:
        def error(self, event: str, **kw: object) -> None:
            errors.append({"event": event, **kw})
    monkeypatch.setattr(batcher_module, "_log", Capture())

    async def write(batch: object) -> int:
        return 0
    b = Batcher(write, spool, batch_size=10, flush_interval_s=30, fsync_interval_s=0.01)
    b.start()
    for n in range(1, 5):
        spool.append(f"record-{n}".encode())
        await wait_for(lambda: len(calls) >= n, timeout=SAFETY_S)  # noqa: B023 — awaited here, at once
    assert [e["event"] for e in errors] == ["spool_sync_failed"]  # once for the failing stretch
    assert not b._sync_failing  # and the next round succeeded
    await b.stop(timeout=1)


def _spool_fds(directory: Path) -> list[str]:
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            path = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if path.startswith(str(directory)) and not path.endswith("/lock"):
            out.append(path)
    return out


_CHILD = """
import asyncio, os, sys, threading
from pathlib import Path
from tracker_watch.evidence.spool import Spool
from tracker_watch.evidence.spool_sync import Flusher

real_fsync = os.fsync
def stuck(fd):  # the cursor file's fsync never returns: the thread is stuck behind it for good
    if os.readlink(f"/proc/self/fd/{fd}").endswith("/cursor.tmp"):
        threading.Event().wait()
    real_fsync(fd)
os.fsync = stuck

async def main():
    spool = Spool(Path(sys.argv[1]), 2**24, segment_bytes=4096)
    spool.open()
    flusher = Flusher(spool)
    for i in range(600):
        spool.append(f"record-{i:04d}".encode() + b"x" * 40)
    await flusher.sync()
    committed = 0
    while committed < 500:  # what the batcher does after each database commit
        got = spool.read(50)
        spool.advance(got.end, len(got.records))
        flusher.save_cursor(got.end)
        committed += len(got.records)
    print(committed, len(list(Path(sys.argv[1]).glob("*.seg"))), flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


async def test_sigkill_while_the_cursor_write_is_stuck_loses_nothing(tmp_path: Path) -> None:
    """Commits went on (deleting finished segments) while the cursor file stayed behind in the stuck thread;
    a SIGKILL then leaves an old cursor that points before every segment left. The restart takes it without
    a damage report, replays from the first segment there is (idempotent) and loses no uncommitted record."""
    directory = tmp_path / "spool"
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", _CHILD, str(directory),
                                                stdout=asyncio.subprocess.PIPE,
                                                env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), SAFETY_S * 3)
    proc.kill()
    await proc.wait()
    committed, _ = map(int, line.split())
    assert read_cursor(directory) == Position(0, 0)  # the cursor write never got through
    spool = Spool(directory, 2**24, segment_bytes=4096)
    spool.open()
    try:
        assert spool.problems == []
        got = spool.read(10_000)
        assert got.corrupt == 0
        names = [r[:11].decode() for r in got.records]
        uncommitted = [f"record-{i:04d}" for i in range(committed, 600)]
        assert names[-len(uncommitted):] == uncommitted  # every one, in order, after some replayed ones
        assert len(names) < 600  # finished segments were deleted before the cursor was durable (replay is less)
    finally:
        spool.close()
