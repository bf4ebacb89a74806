"""Observations → PostgreSQL in batches, by size or by time, retried until written.

A batch that fails stays at the head of the queue and is retried with backoff; since every
observation already has its id, a retry after an unclear failure (commit sent, reply lost) inserts
nothing twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

from tracker_watch import log, metrics
from tracker_watch.domain.evidence import Observation

_log = log.get("tracker_watch.evidence")

WriteFn = Callable[[Sequence[Observation]], Awaitable[int]]


class Batcher:
    def __init__(self, write: WriteFn, batch_size: int = 1000, flush_interval_s: float = 1.0,
                 max_pending: int = 200_000, on_batch: Callable[[int, float], None] | None = None) -> None:
        self._write = write
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.max_pending = max_pending
        self._on_batch = on_batch
        self._pending: deque[Observation] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.written = 0
        self.failures = 0
        self._warned_full = False

    @property
    def pending(self) -> int:
        return len(self._pending)

    def put(self, obs: Observation) -> None:
        self._pending.append(obs)
        if len(self._pending) >= self.batch_size:
            self._wake.set()
        if len(self._pending) > self.max_pending and not self._warned_full:
            self._warned_full = True
            metrics.LIMIT_HITS.labels(limit="collector.max_pending").inc()
            _log.error("observations_backlog_full", pending=len(self._pending), limit=self.max_pending)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="batcher")

    async def _run(self) -> None:
        backoff = 0.5
        while True:
            if len(self._pending) < self.batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self.flush_interval_s)
            self._wake.clear()
            try:
                while self._pending:
                    await self._write_one()
                backoff = 0.5
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.failures += 1
                metrics.DATABASE_ERRORS.labels(operation="write_observations").inc()
                _log.warning("batch_write_failed", error=str(exc)[:300], pending=len(self._pending),
                             retry_in_s=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    async def _write_one(self) -> None:
        batch = [self._pending[i] for i in range(min(self.batch_size, len(self._pending)))]
        started = time.perf_counter()
        await self._write(batch)
        for _ in batch:
            self._pending.popleft()
        self.written += len(batch)
        if len(self._pending) <= self.max_pending:
            self._warned_full = False
        elapsed = time.perf_counter() - started
        metrics.INGEST_BATCH_ROWS.observe(len(batch))
        metrics.INGEST_BATCH_SECONDS.observe(elapsed)
        if self._on_batch is not None:
            self._on_batch(len(batch), elapsed)

    async def stop(self, timeout: float) -> int:
        """Stop the background writer and write everything pending; returns what could not be written."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        deadline = time.monotonic() + timeout
        while self._pending and time.monotonic() < deadline:
            try:
                await asyncio.wait_for(self._write_one(), timeout=max(0.1, deadline - time.monotonic()))
            except Exception as exc:
                _log.warning("final_flush_failed", error=str(exc)[:300], pending=len(self._pending))
                await asyncio.sleep(0.2)
        if self._pending:
            _log.error("observations_not_written", count=len(self._pending))
        return len(self._pending)
