"""The writer process's preparer: a stateless process that turns spool records into prepared batches.

Why: preparing a batch (decoding, content hashes, the incident fold, binary COPY rows) is two thirds of
the writer process's CPU and needs nothing from the database, while the transaction that follows is a
chain of round trips that PostgreSQL alone can serve. In one process the two share one event loop: the
next batch's preparation (sinks.InOrder, in slices) runs only while PostgreSQL is busy and still paces
the COPYs, so a batch's transaction waited for the next one's slices. Here the writer process's loop
keeps only the transaction (chain links, the COPYs, the upsert, the incident changes), and the
preparer works beside it on the other core (BENCHMARKS.md, "Ingestion", fifth pass).

It holds nothing worth keeping: records in, prepared batches out, in order. Killed at any moment, the
batches it had are failed in the writer (acknowledged to the daemon as errors, never as stored); the
daemon sends them again from its cursor, and the writer starts a new preparer. It never writes to the
database and never sees the chain head, so it cannot lose or duplicate evidence; what it computes is
what `EvidenceWriter.prepare` computes (tests/test_preparer.py holds them equal).

Protocol (writer_proc's frames: a 4-byte big-endian length and a MessagePack body), on its stdin and
stdout: first [window_s, chain format], then one frame of records per batch; per batch, in order,
[error or nil, records that did not decode, ids, first observed_at, last observed_at, [[grade, source,
n], ...], content hashes, COPY row prefixes, staging COPY, staged incidents] (all but the first two
absent when nothing decoded). End of stdin: exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections import Counter, deque
from collections.abc import Callable, Sequence
from typing import Any

from asyncpg.pgproto.pgproto import UUID

from tracker_watch.evidence.frames import frame, read_frame, read_frame_blocking
from tracker_watch.evidence.sinks import Written, _Chained, decode
from tracker_watch.ledger.evidence import EvidenceWriter
from tracker_watch.ledger.evidence_prep import Prepared, distinct, prepare

Decoder = Callable[[Sequence[bytes]], tuple[list[Any], int]]


class PreparerLost(RuntimeError):
    """The preparer process ended (killed, or a bug) with this batch in hand: the batch is not written."""


def prepared_reply(records: Sequence[bytes], window_s: int, fmt: int, decode: Decoder) -> list[Any]:
    """What the preparer sends back for one batch."""
    batch, bad = decode(records)
    if not batch:
        return [None, bad]
    p = prepare(batch, window_s, fmt)
    return [None, bad, [i.bytes for i in p.ids], p.first_at, p.last_at, [[g, s, n] for (g, s), n in p.counts.items()],
            p.contents, p.prefixes, p.stage, p.staged]


def from_reply(reply: list[Any], records: Sequence[bytes], fmt: int, decode: Decoder) -> tuple[Prepared | None, int]:
    """The writer's side of `prepared_reply`: a Prepared (None when nothing decoded) and the undecodable count."""
    error, bad, *rest = reply
    if error is not None:
        raise RuntimeError(f"preparer: {error}")
    if not rest:
        return None, bad
    ids, first, last, counts, contents, prefixes, stage, staged = rest
    if not len(ids) == len(contents) == len(prefixes) or len(ids) + bad > len(records):  # never a torn reply
        raise PreparerLost("the preparer's reply does not fit its batch")
    # asyncpg's own UUID type, made in C from the 16 bytes: the replay check sends it as it is
    return Prepared([UUID(i) for i in ids], first, last, Counter({(g, s): n for g, s, n in counts}), contents,
                    stage, staged, fmt, prefixes, lambda: distinct(decode(records)[0])), bad


def main() -> None:
    stdin, out = sys.stdin.buffer, sys.stdout.fileno()
    config = read_frame_blocking(stdin)
    if config is None:
        return
    window_s, fmt = config
    while (records := read_frame_blocking(stdin)) is not None:
        try:
            reply = prepared_reply(records, window_s, fmt, decode)
        except Exception as exc:  # a bug: this batch fails in the writer, the next may not
            reply = [(str(exc) or type(exc).__name__)[:300], 0]
        data = memoryview(frame(reply))
        while data:  # ~400 bytes an observation: the pipe takes it in parts
            data = data[os.write(out, data):]


class _Running:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.waiting: deque[asyncio.Future[list[Any]]] = deque()
        self.replies = asyncio.create_task(self._replies(), name="preparer-replies")

    async def _replies(self) -> None:
        assert self.proc.stdout is not None
        try:
            while (reply := await read_frame(self.proc.stdout)) is not None:
                future = self.waiting.popleft()
                if not future.done():
                    future.set_result(reply)
        except BaseException:  # a reply that does not decode: this process is no longer to be trusted
            self.kill()
            raise
        finally:  # its stdout ended: it is gone (or going), and so is what it had in hand
            for future in self.waiting:
                if not future.done():
                    future.set_exception(PreparerLost("the preparer process ended"))
            self.waiting.clear()

    def kill(self) -> None:
        # os.kill, not Process.kill: Popen's kill reaps an exited child itself (poll), and asyncio's child
        # watcher, waiting for the same pid, then logs "Unknown child process pid" and reports 255
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)

    def alive(self) -> bool:
        return self.proc.returncode is None and not self.replies.done()


class Preparer:
    """The writer process's handle on its preparer process: started on first use, again after it died."""

    def __init__(self, window_s: int, fmt: int, decode: Decoder) -> None:
        self.window_s, self.fmt, self.decode = window_s, fmt, decode
        self.running: _Running | None = None
        self.starts = 0
        self._starting = asyncio.Lock()  # two batches arrive at once: one process, not one each

    async def prepare(self, records: list[bytes]) -> tuple[Prepared | None, int]:
        running = await self._running()
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        running.waiting.append(future)
        assert running.proc.stdin is not None
        try:
            running.proc.stdin.write(frame(records))
            await running.proc.stdin.drain()
        except (OSError, RuntimeError) as exc:  # it is gone: its replies task fails what it had
            running.kill()
            if not future.done():
                future.set_exception(PreparerLost(f"preparer process: {exc or type(exc).__name__}"))
        return from_reply(await future, records, self.fmt, self.decode)

    async def _running(self) -> _Running:
        async with self._starting:
            if self.running is None or not self.running.alive():
                self.running = await self._start()
            return self.running

    async def _start(self) -> _Running:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tracker_watch.evidence.preparer", stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, limit=2**26)
        assert proc.stdin is not None
        proc.stdin.write(frame([self.window_s, self.fmt]))
        self.starts += 1
        return _Running(proc)

    async def close(self, timeout: float = 10.0) -> None:
        running, self.running = self.running, None
        if running is None:
            return
        if running.proc.stdin is not None:
            running.proc.stdin.close()
        try:
            await asyncio.wait_for(running.proc.wait(), timeout)
        except TimeoutError:
            running.kill()
            await running.proc.wait()
        await asyncio.gather(running.replies, return_exceptions=True)


class Ahead(_Chained):
    """The writer process's sink: each batch prepared in the preparer process as soon as it arrives (so the
    next is ready while one is in PostgreSQL), written after the batch before it committed."""

    def __init__(self, writer: Callable[[], EvidenceWriter], preparer: Preparer) -> None:
        super().__init__()
        self._writer = writer  # raises (DatabaseAway) while there is no database
        self.preparer = preparer

    async def _one(self, records: list[bytes], prev: asyncio.Task[Written] | None, round_: int) -> Written:
        writer = self._writer()
        prepared, bad = await self.preparer.prepare(records)
        await self._after(prev, round_)
        return (await writer.write_prepared(prepared) if prepared is not None else 0), bad

    async def close(self, timeout: float) -> None:
        await super().close(timeout)
        await self.preparer.close()


if __name__ == "__main__":
    main()
