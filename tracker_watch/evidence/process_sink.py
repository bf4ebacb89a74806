"""The daemon's side of the writer process (writer_proc.py): a Batcher sink that starts, feeds and restarts it.

Why the daemon keeps the spool and sends records, rather than the writer process reading the spool itself:
the spool has one owner, the process holding its `flock` (spool.py), which appends, reads and moves the
cursor; two processes on one spool would need a cross-process protocol for the cursor, the segment
deletion and the pending counts. Here the writer holds no state: the daemon reads a batch, sends its
records (~220 bytes an observation through a pipe), and moves the cursor only when the writer
acknowledges that batch's commit. A writer that dies (killed, out of memory, a bug) fails the batches
in flight; the Batcher backs off and sends them again from the cursor to a new writer process, which drops
what its predecessor had committed by observation id. Nothing is lost, nothing is stored twice.

Metrics: the writer sends what each batch stored (by grade and source, incidents touched) with its
acknowledgement and this process counts it, so /metrics stays one process's registry (no multiprocess
mode, no second port) and the README table holds as it is. Logs: the writer writes JSON lines to the
daemon's own stream (stdout, or stderr where the daemon logs there, as the demo does).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections import Counter
from typing import Any

from tracker_watch import log, metrics
from tracker_watch.evidence.frames import frame, read_frame
from tracker_watch.evidence.sinks import Written
from tracker_watch.ledger.evidence import count_stored

_log = log.get("tracker_watch.evidence")


class WriterUnavailable(RuntimeError):
    """No writer process to send to (no database yet, or it exited): the batch stays in the spool."""


class ProcessSink:
    def __init__(self) -> None:
        self.config: dict[str, Any] | None = None  # set by `connect` once the database answers
        self.proc: asyncio.subprocess.Process | None = None
        self._acks: asyncio.Task[None] | None = None
        self._waiting: dict[int, asyncio.Future[Written]] = {}
        self._seq = 0
        self._round = 0
        self.exits = 0  # writer processes that ended without being asked to

    def connect(self, config: dict[str, Any]) -> None:
        """The database answers: `config` is what the writer process needs (see `writer_config`)."""
        self.config = config

    async def submit(self, records: list[bytes]) -> asyncio.Future[Written]:
        future: asyncio.Future[Written] = asyncio.get_running_loop().create_future()
        try:
            proc = await self._running()
            assert proc.stdin is not None
            self._seq += 1
            self._waiting[self._seq] = future
            proc.stdin.write(frame([self._round, self._seq, records]))
            await proc.stdin.drain()
        except Exception as exc:
            if not future.done():
                future.set_exception(exc if isinstance(exc, WriterUnavailable)
                                     else WriterUnavailable(f"writer process: {exc or type(exc).__name__}"))
        return future

    def reset(self) -> None:
        self._round += 1  # what the writer still holds of the old round is skipped there

    async def _running(self) -> asyncio.subprocess.Process:
        if self.proc is not None and self.proc.returncode is None and self._acks is not None \
                and not self._acks.done():
            return self.proc
        if self.config is None:
            raise WriterUnavailable("database not connected yet: the batch stays in the spool")
        read_fd, write_fd = os.pipe()
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tracker_watch.evidence.writer_proc", str(write_fd),
                stdin=asyncio.subprocess.PIPE, pass_fds=(write_fd,))
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        reader = asyncio.StreamReader()
        loop = asyncio.get_running_loop()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", 0))
        assert proc.stdin is not None
        proc.stdin.write(frame(self.config))
        self.proc = proc
        self._acks = asyncio.create_task(self._read_acks(proc, reader), name="writer-acks")
        return proc

    async def _read_acks(self, proc: asyncio.subprocess.Process, reader: asyncio.StreamReader) -> None:
        while (ack := await read_frame(reader)) is not None:
            seq, stored, bad, counts, touched, error = ack
            future = self._waiting.pop(seq, None)
            if error is None:
                count_stored(Counter({(g, s): n for g, s, n in counts}), touched)  # counted, whoever waits
            if future is None or future.done():
                continue
            if error is None:
                future.set_result((stored, bad))
            else:
                future.set_exception(RuntimeError(error))
        code = await proc.wait()
        if self.proc is proc and not self._closing:
            self.exits += 1
            metrics.WRITER_PROCESS_EXITS.inc()
            _log.error("writer_process_exited", pid=proc.pid, returncode=code, in_flight=len(self._waiting),
                       note="its batches stay in the spool and go to a new writer process")
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(WriterUnavailable(f"writer process exited ({code})"))
        self._waiting.clear()

    _closing = False

    async def close(self, timeout: float) -> None:
        """End of input: the writer finishes what it was sent and exits (killed after `timeout`)."""
        proc, self._closing = self.proc, True
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        if self._acks is not None:
            await asyncio.gather(self._acks, return_exceptions=True)


def writer_config(dsn: str, schema: str, node: str, key: bytes, window_s: int, checkpoint_every: int,
                  checkpoint_interval_s: float, timeout_s: float, log_format: str, log_level: str) -> dict[str, Any]:
    return {"dsn": dsn, "schema": schema, "node": node, "key": key, "window_s": window_s,
            "checkpoint_every": checkpoint_every, "checkpoint_interval_s": checkpoint_interval_s,
            "timeout": timeout_s, "log_format": log_format, "log_level": log_level,
            "log_stream": log.stream_name()}  # the daemon's stream: the demo keeps stdout for its table
