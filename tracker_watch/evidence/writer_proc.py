"""The evidence writer process: batches of spool records in on stdin, "committed" out on a pipe.

Started and supervised by the daemon (process_sink.ProcessSink) when `collector.writer = "process"`,
so that the writer's Python (decoding, hashing, the incident fold, COPY encoding) and PostgreSQL's work
run on two cores at once while the daemon's loop keeps the swarms and the spool. The daemon keeps sole
ownership of the spool; this process holds no state worth keeping: killed at any moment, it loses
nothing (the daemon moves the cursor only over batches acknowledged here after their commit, and
re-sends the rest, which the writer drops by observation id).

Protocol (frames of a 4-byte big-endian length and a MessagePack body):
  daemon → writer: first the configuration (a map), then batches [round, seq, [record, ...]]; a batch of
    a new round means the daemon started over from its cursor: what is left of the old round is skipped;
  writer → daemon: per batch, in commit order, [seq, stored, undecodable, [[grade, source, n], ...],
    incidents touched, error or nil]. The counts are the writer's metrics, which the daemon counts.
Logs go to the daemon's log stream (stdout or stderr, inherited), as JSON lines with this process's `node`
and `process`.
End of stdin (the daemon closed it, or died): finish what was received, exit.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections import Counter, deque
from typing import Any

import asyncpg
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tracker_watch import log
from tracker_watch.config import LogSettings
from tracker_watch.evidence.frames import frame, read_frame
from tracker_watch.evidence.preparer import Ahead, Preparer
from tracker_watch.evidence.sinks import InOrder, Sink, Written, decode
from tracker_watch.ledger.evidence import FORMAT, EvidenceWriter

_log = log.get("tracker_watch.evidence")


class Child:
    def __init__(self, config: dict[str, Any], out_fd: int) -> None:
        self.config = config
        self.out_fd = out_fd
        self.pool: asyncpg.Pool | None = None
        self.writer: EvidenceWriter | None = None
        # the batches are prepared in a preparer process beside this one (preparer.py); "preparer": False (for
        # bench.ingestion's comparison) prepares them here, in slices between the transaction's statements
        self.sink: Sink = Ahead(self._writer, Preparer(config["window_s"], FORMAT, decode)) \
            if config.get("preparer", True) else InOrder(self._writer)
        self.round = -1
        self.stored: deque[tuple[Counter[tuple[str, str]], int]] = deque()  # on_stored, in commit order

    async def start(self) -> None:
        c = self.config
        # min_size 0: a database that is away now fails the batch (acknowledged as an error), not the process
        self.pool = await asyncpg.create_pool(c["dsn"], min_size=0, max_size=1, command_timeout=c["timeout"],
                                              server_settings={"search_path": c["schema"],
                                                               "application_name": c.get("application_name",
                                                                                       "tracker-watch-writer")})
        self.writer = EvidenceWriter(self.pool, c["node"], Ed25519PrivateKey.from_private_bytes(c["key"]),
                                     c["window_s"], c["checkpoint_every"], c["checkpoint_interval_s"])
        self.writer.on_stored = lambda counts, touched: self.stored.append((counts, touched))

    def _writer(self) -> EvidenceWriter:
        assert self.writer is not None
        return self.writer

    async def batch(self, round_: int, seq: int, records: list[bytes]) -> None:
        if round_ != self.round:
            self.round = round_
            self.sink.reset()
        future = await self.sink.submit(records)
        future.add_done_callback(lambda f: self._ack(seq, f))

    def _ack(self, seq: int, future: asyncio.Future[Written]) -> None:
        if future.cancelled() or (exc := future.exception()) is not None:
            error = "cancelled" if future.cancelled() else (str(exc) or type(exc).__name__)[:300]
            self._send([seq, 0, 0, [], 0, error])
            return
        stored, bad = future.result()
        counts, touched = self.stored.popleft() if stored else (Counter[tuple[str, str]](), 0)
        self._send([seq, stored, bad, [[g, s, n] for (g, s), n in counts.items()], touched, None])

    def _send(self, value: Any) -> None:
        data = memoryview(frame(value))
        while data:  # a few dozen bytes; the daemon reads them at once
            data = data[os.write(self.out_fd, data):]

    async def close(self) -> None:
        await self.sink.close(timeout=60.0)
        if self.pool is not None:
            await self.pool.close()


async def main_async(out_fd: int) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**26)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    config = await read_frame(reader)
    if config is None:
        return
    stream = sys.stderr if config.get("log_stream") == "stderr" else sys.stdout  # inherited: the daemon's own
    log.configure(LogSettings(config["log_format"], config["log_level"]), node=config["node"], stream=stream)
    structlog.contextvars.bind_contextvars(process="writer")
    child = Child(config, out_fd)
    await child.start()
    _log.info("writer_process_started", pid=os.getpid())
    try:
        while (message := await read_frame(reader)) is not None:
            await child.batch(*message)
    finally:
        await child.close()


def main() -> None:
    asyncio.run(main_async(int(sys.argv[1])))


if __name__ == "__main__":
    main()
