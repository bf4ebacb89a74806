"""Where the Batcher's batches go: spooled records in, "stored" out, one transaction per batch, in order.

A sink takes a batch of spool records (`submit`) and returns a future of (observations stored,
records that did not decode). The Batcher may have more than one batch submitted (`Batcher.depth`) and
moves the spool cursor over each batch only after its future says it is committed, oldest first; after a
failure it calls `reset` and submits again from the cursor, so a batch is never acknowledged before it
is in the database and batches are committed in spool order.

* `PlainSink` — decode, then the write function (`EvidenceWriter.write`, or a test's): one batch at a time.
* `InOrder` — the overlapped writer: batch N+1 is decoded and prepared (content hashes, incident fold,
  COPY rows) on the event loop in slices while batch N is in PostgreSQL, then waits for N's commit before
  its own transaction. Slices, not a thread: a worker thread holding the GIL delays every PostgreSQL reply
  by up to a switch interval (measured slower, BENCHMARKS.md "Ingestion"); a slice delays one reply by at
  most its own ~2 ms. Slices run only while the batch before is in one of PostgreSQL's longer statements
  (`EvidenceWriter.overlap`): in the transaction's short round trips they kept PostgreSQL idle instead.
  The writer task runs one of these; the writer process runs preparer.Ahead, which prepares in a process
  beside it instead (and this one only when bench.ingestion turns its preparer off).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from tracker_watch.domain.evidence import Observation, decode_observation
from tracker_watch.ledger.evidence import EvidenceWriter
from tracker_watch.ledger.evidence_prep import Prepared

Written = tuple[int, int]  # observations stored (new), records that did not decode
WriteFn = Callable[[Sequence[Observation]], Awaitable[int]]


class Skipped(RuntimeError):
    """A batch submitted after one that failed: not written, so that batches commit in spool order."""


class Sink(Protocol):
    async def submit(self, records: list[bytes]) -> asyncio.Future[Written]: ...

    def reset(self) -> None: ...

    async def close(self, timeout: float) -> None: ...


def decode(records: Sequence[bytes]) -> tuple[list[Observation], int]:
    out: list[Observation] = []
    bad = 0
    for record in records:
        try:
            out.append(decode_observation(record))
        except ValueError:
            bad += 1
    return out, bad


class _Chained:
    """Batches in submission order: each waits for the one before it to commit, and is skipped if it failed
    or if `reset` started a new round after it was submitted."""

    def __init__(self) -> None:
        self._last: asyncio.Task[Written] | None = None
        self._round = 0

    async def submit(self, records: list[bytes]) -> asyncio.Future[Written]:
        task = asyncio.create_task(self._one(records, self._last, self._round), name="evidence-batch")
        self._last = task
        return task

    def reset(self) -> None:
        self._round += 1
        self._last = None

    async def close(self, timeout: float) -> None:
        if self._last is not None:
            await asyncio.wait([self._last], timeout=timeout)

    async def _after(self, prev: asyncio.Task[Written] | None, round_: int) -> None:
        if prev is not None:
            await asyncio.wait([prev])  # never `await prev`: cancelling us must not cancel it
            if prev.cancelled() or prev.exception() is not None:
                raise Skipped("an earlier batch was not written")
        if round_ != self._round:
            raise Skipped("the batcher started over from its cursor")

    async def _one(self, records: list[bytes], prev: asyncio.Task[Written] | None, round_: int) -> Written:
        raise NotImplementedError


class PlainSink(_Chained):
    """Decode, wait for the batch before, write: what the Batcher did before sinks (tests give their own
    write functions)."""

    def __init__(self, write: WriteFn) -> None:
        super().__init__()
        self._write = write

    async def _one(self, records: list[bytes], prev: asyncio.Task[Written] | None, round_: int) -> Written:
        await self._after(prev, round_)
        batch, bad = decode(records)
        return (await self._write(batch) if batch else 0), bad


class InOrder(_Chained):
    """Prepare while the batch before is in PostgreSQL; write after it committed."""

    def __init__(self, writer: Callable[[], EvidenceWriter], slice_rows: int = 100) -> None:
        super().__init__()
        self._writer = writer  # raises (DatabaseAway) while there is no database
        self.slice_rows = slice_rows

    async def _one(self, records: list[bytes], prev: asyncio.Task[Written] | None, round_: int) -> Written:
        writer = self._writer()
        prepared, bad = await self._prepare(writer, records)
        await self._after(prev, round_)
        return (await writer.write_prepared(prepared) if prepared.ids else 0), bad

    async def _prepare(self, writer: EvidenceWriter, records: list[bytes]) -> tuple[Prepared, int]:
        parts: list[Prepared] = []
        bad = 0
        for i in range(0, len(records), self.slice_rows):
            await writer.overlap.wait()  # only while PostgreSQL is busy with the batch before, or idle
            batch, b = decode(records[i:i + self.slice_rows])
            bad += b
            parts.append(writer.prepare_rows(batch))
            await asyncio.sleep(0)  # let the reply of the batch in PostgreSQL through
        await writer.overlap.wait()
        return writer.join_prepared(parts), bad
