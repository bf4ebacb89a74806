"""Metadata arriving from peers is written to the state directory off the event loop.

Each info dict is kept in a file until it is stored with its targets (tracker_watch/pending_metadata.py). The
file used to be written inside the alert callback: 1,000 swarms whose metadata came in one batch of alerts
wrote 1,000 files with the loop stopped (15 % of a busy node's CPU at 1,000 swarms, BENCHMARKS.md). Here the
file is a named pipe whose reader drains it only once the loop has turned: written on the loop, it would block
the loop until the reader gives up waiting.
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

from tests.helpers import wait_for
from tracker_watch.domain import bencode
from tracker_watch.domain.targets import meta_from_info
from tracker_watch.pending_metadata import PendingMetadata

PIECES = 4000  # an info dict of ~80 KB, ~160 KB as hex: more than a pipe holds, so its writer waits for the reader


async def test_an_arrival_writes_its_file_without_holding_the_loop(tmp_path: Path) -> None:
    info = bencode.encode({b"name": b"film.mkv", b"piece length": 16384, b"length": 16384 * PIECES,
                           b"pieces": b"\x01" * 20 * PIECES})
    pm = PendingMetadata(tmp_path / "pending")
    pm.directory.mkdir()
    key = "ab" * 20
    fifo = pm.directory / f"{key}.tmp"  # where the file is written before it is renamed
    os.mkfifo(fifo)
    turned = threading.Event()
    seen: dict[str, int | bool] = {}

    def reader() -> None:
        with open(fifo, "rb") as f:
            seen["loop_turned_first"] = turned.wait(timeout=30)  # not a measure: only so that the old code fails
            seen["bytes"] = len(f.read())

    threading.Thread(target=reader, daemon=True).start()
    run = asyncio.create_task(pm.run())
    asyncio.get_running_loop().call_soon(turned.set)
    try:
        pm.add(key, [1], info, meta_from_info(info))
        await wait_for(lambda: "bytes" in seen, timeout=60)
        assert seen["loop_turned_first"] is True
        assert seen["bytes"] > 2 * len(info)  # the whole file went through
        await wait_for(lambda: (pm.directory / f"{key}.json").exists(), timeout=30)
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
