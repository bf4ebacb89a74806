"""Observations → spool at once → PostgreSQL in batches, by size or by time, retried until written.

`put` appends each observation to the spool (the write-ahead log in `spool.py`) before anything else
happens to it; the writer task reads batches back from the spool and moves the spool's cursor only after
the database committed them. So a database outage only grows the spool, a crash or SIGKILL loses
nothing, and a batch whose commit reply was lost is simply written again: the evidence writer drops
observations whose id is already stored. With a group fsync interval (the daemon's default), the spool's
fsyncs and cursor writes run in one worker thread (`spool_sync.Flusher`), off the event loop; `stop`
waits for them and fsyncs the rest before it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable

from tracker_watch import log, metrics
from tracker_watch.domain.evidence import Grade, Observation, encode_observation
from tracker_watch.evidence.sinks import PlainSink, Sink, WriteFn, Written
from tracker_watch.evidence.spool import Position, Spool
from tracker_watch.evidence.spool_sync import Flusher

_log = log.get("tracker_watch.evidence")

RESERVE = 0.9  # above this share of spool.max_bytes only direct evidence (handshake and up) is kept


class Batcher:
    def __init__(self, write: WriteFn, spool: Spool, batch_size: int = 1000, flush_interval_s: float = 1.0,
                 fsync_interval_s: float = 0.2, write_timeout_s: float = 30.0, near_full_ratio: float = 0.8,
                 on_batch: Callable[[int, float], None] | None = None, sink: Sink | None = None,
                 depth: int = 1) -> None:
        self.sink: Sink = sink if sink is not None else PlainSink(write)
        self.depth = depth  # batches submitted to the sink at once (2: the next is prepared while one commits)
        self.spool = spool
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.fsync_interval_s = fsync_interval_s
        self.write_timeout_s = write_timeout_s
        self.near_full_ratio = near_full_ratio
        self._on_batch = on_batch
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.written = 0
        self.failures = 0
        self.dropped = 0
        self.corrupt = 0
        self._warned_full = False
        self._sync_failing = False
        self._reported_upto = Position(-1, 0)
        self._flusher: Flusher | None = None

    @property
    def pending(self) -> int:
        return self.spool.pending_records

    # --- intake ----------------------------------------------------------------------------------------
    def put(self, obs: Observation) -> None:
        used, limit = self.spool.pending_bytes, self.spool.max_bytes
        if used >= limit or (obs.grade is Grade.LISTED and used >= RESERVE * limit):
            self._drop(obs, "spool_full", used)
            return
        if used >= self.near_full_ratio * limit and not self._warned_full:
            self._warned_full = True
            metrics.LIMIT_HITS.labels(limit="spool.max_bytes").inc()
            _log.error("spool_nearly_full", spool_bytes=used, limit=limit)
        try:
            self.spool.append(encode_observation(obs))
        except OSError as exc:  # disk full or failing: the one way an observation can be lost here
            self._drop(obs, "spool_error", used, error=str(exc))
            return
        if self.fsync_interval_s <= 0:
            self._sync()
        if self.spool.pending_records >= self.batch_size:
            self._wake.set()

    def _drop(self, obs: Observation, reason: str, used: int, error: str | None = None) -> None:
        self.dropped += 1
        metrics.OBSERVATIONS_DROPPED.labels(reason=reason).inc()
        if self.dropped == 1 or self.dropped % 10_000 == 0:  # loud, but not one line per observation
            _log.error("observation_dropped", reason=reason, grade=obs.grade.value, dropped=self.dropped,
                       spool_bytes=used, error=error)

    # --- the writer --------------------------------------------------------------------------------------
    def kick(self) -> None:
        """Try the database now rather than at the end of the current back-off (it just came back)."""
        self._wake.set()

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run(), name="batcher")]
        if self.fsync_interval_s > 0:  # (0: every put fsyncs before it returns, in the caller's thread)
            self._flusher = Flusher(self.spool)
            self._tasks.append(asyncio.create_task(self._syncer(self._flusher), name="spool-fsync"))

    async def _syncer(self, flusher: Flusher) -> None:
        while True:
            await asyncio.sleep(self.fsync_interval_s)
            try:
                await flusher.sync()
            except OSError as exc:
                self._sync_result(exc)
            else:
                self._sync_result(None)

    def _sync(self) -> None:
        try:
            self.spool.sync()
        except OSError as exc:
            self._sync_result(exc)
        else:
            self._sync_result(None)

    def _sync_result(self, exc: OSError | None) -> None:
        if exc is not None:  # the records are with the kernel; the next round tries again
            if not self._sync_failing:
                _log.error("spool_sync_failed", error=str(exc))
            self._sync_failing = True
        else:
            self._sync_failing = False

    async def _run(self) -> None:
        backoff = 0.5
        while True:
            if self.spool.pending_records < self.batch_size:
                # asyncio.timeout, never wait_for, here: on 3.11 wait_for can lose a cancel that arrives as its
                # inner task finishes, and stop() then waits on this task for ever (found by bench.ingestion)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.flush_interval_s):
                        await self._wake.wait()
            self._wake.clear()
            try:
                while await self._write_one():
                    pass
                backoff = 0.5
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.failures += 1
                metrics.DATABASE_ERRORS.labels(operation="write_observations").inc()
                metrics.DATABASE_UP.set(0)
                _log.warning("batch_write_failed", error=(str(exc) or type(exc).__name__)[:300],
                             pending=self.pending, spool_bytes=self.spool.pending_bytes, retry_in_s=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    async def _write_one(self) -> bool:
        """Write what is spooled, up to `depth` batches submitted at once; False when there was nothing."""
        start = nxt = self.spool.cursor
        flights: deque[tuple[Position, int, asyncio.Future[Written], float]] = deque()
        try:
            while True:
                while len(flights) < self.depth:
                    result = self.spool.read(self.batch_size, nxt)
                    if result.end == nxt:
                        break
                    self._report(nxt, result.end, result.corrupt)
                    flights.append((result.end, len(result.records), await self._submit(result.records),
                                    time.perf_counter()))
                    nxt = result.end
                if not flights:
                    return self.spool.cursor != start
                end, records, future, started = flights[0]
                async with asyncio.timeout(self.write_timeout_s):
                    stored, bad = await asyncio.shield(future)
                flights.popleft()
                self._committed(end, records, stored, bad, time.perf_counter() - started)
        except BaseException:
            for _, _, future, _ in flights:  # in flight after the one that failed: none commits (Skipped)
                future.cancel()
            self.sink.reset()
            raise

    async def _submit(self, records: list[bytes]) -> asyncio.Future[Written]:
        if records:
            return await self.sink.submit(records)
        done: asyncio.Future[Written] = asyncio.get_running_loop().create_future()
        done.set_result((0, 0))  # only damage, or an empty segment passed: nothing for the database
        return done

    def _report(self, start: Position, end: Position, bad: int) -> None:
        if bad and end > self._reported_upto:  # report each damaged stretch once, not per retry
            self._reported_upto = end
            self.corrupt += bad
            metrics.SPOOL_CORRUPT.inc(bad)
            _log.error("spool_record_corrupt", records=bad, segment=start.segment, offset=start.offset)

    def _committed(self, end: Position, records: int, stored: int, bad: int, elapsed: float) -> None:
        """The batch up to `end` is in the database: move the cursor over it."""
        start = self.spool.cursor
        self._report(start, end, bad)
        if self._flusher is not None:
            self.spool.advance(end, records)
            self._flusher.save_cursor(end)
        else:
            self.spool.commit(end, records)
        metrics.DATABASE_UP.set(1)
        if self.spool.pending_bytes < self.near_full_ratio * self.spool.max_bytes:
            self._warned_full = False
        batch = records - bad
        self.written += batch
        if batch:
            metrics.INGEST_BATCH_ROWS.observe(batch)
            metrics.INGEST_BATCH_SECONDS.observe(elapsed)
            if self._on_batch is not None:
                self._on_batch(batch, elapsed)

    async def stop(self, timeout: float) -> int:
        """Stop, write what the deadline allows, close the spool; returns what stays spooled for next time."""
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            _, stuck = await asyncio.wait(self._tasks, timeout=2.0)
            if stuck:  # never wait for ever on a task that ignored its cancel; write on regardless
                _log.error("batcher_task_stuck", tasks=[t.get_name() for t in stuck])
        self._tasks = []
        deadline = time.monotonic() + timeout
        while self.pending and time.monotonic() < deadline:
            try:
                async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
                    if not await self._write_one():
                        break
            except Exception as exc:
                _log.warning("final_flush_failed", error=(str(exc) or type(exc).__name__)[:300],
                             pending=self.pending)
                await asyncio.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
        left = self.pending
        try:
            await self.sink.close(timeout=max(1.0, deadline - time.monotonic()))
        finally:
            flusher, self._flusher = self._flusher, None
            if flusher is not None:  # the last cursor written, and no fd left in the thread, before the spool closes
                try:
                    try:
                        await flusher.sync()  # what is left, in the thread too; close() tries again if it failed
                    except OSError as exc:
                        self._sync_result(exc)
                    await flusher.drain()
                finally:
                    flusher.close()  # (at once after drain; should drain be cancelled, waits for the thread)
            self.spool.close()  # fsyncs what is left, here
        if left:
            _log.warning("observations_left_in_spool", count=left, note="written at the next start")
        return left
