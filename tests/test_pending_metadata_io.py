"""Metadata arriving from peers is written to the state directory off the event loop.

Each info dict is kept in a file until it is stored with its targets (tracker_watch/pending_metadata.py). The
file used to be written inside the alert callback: 1,000 swarms whose metadata came in one batch of alerts
wrote 1,000 files with the loop stopped (15 % of a busy node's CPU at 1,000 swarms, BENCHMARKS.md). Here the
file is a named pipe whose reader drains it only once the loop has turned: written on the loop, it would block
the loop until the reader gives up waiting.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import threading
from pathlib import Path

from tests.helpers import wait_for, wait_for_async
from tracker_watch.domain import bencode
from tracker_watch.domain.targets import meta_from_info, parse_target
from tracker_watch.ledger.db import Database
from tracker_watch.ledger.targets import TargetStore
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


async def test_a_batch_with_one_bad_swarm_stores_the_others_and_keeps_the_bad_one(tmp_path: Path,
                                                                                 db: Database) -> None:
    """The batch statement fails as a whole when one swarm's row cannot be stored; then each is tried alone,
    so the good ones are stored at once and only the bad one stays pending, its file kept, at the back."""
    store = TargetStore(db.pool)
    ids = [(await store.register(parse_target(f"{i + 1:040x}"), "Studio", "Film", actor="test"))[0].id
           for i in range(3)]
    pm = PendingMetadata(tmp_path / "pending")
    entries = {}
    for n, target in enumerate(ids):
        info = bencode.encode({b"name": f"film{n}.mkv".encode(), b"piece length": 16384, b"length": 16384,
                               b"pieces": bytes([n]) * 20})
        meta = meta_from_info(info)
        if n == 1:  # a name PostgreSQL's text cannot hold: this row, and so the batch statement, fails
            meta = dataclasses.replace(meta, name="film\x00.mkv")
        key = f"{n + 1:040x}"
        entries[key] = target
        pm.add(key, [target], info, meta)
    pm.connect(db.pool)
    run = asyncio.create_task(pm.run())
    try:
        await wait_for_async(lambda: _named(db, ids[0], ids[2]), timeout=30)
        assert list(pm.pending) == [f"{2:040x}"]  # only the bad one waits
        assert sorted(p.stem for p in pm.directory.glob("*.json")) == [f"{2:040x}"]
        assert await db.pool.fetchval("SELECT info IS NULL FROM targets WHERE id = $1", ids[1])
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)


async def _named(db: Database, *ids: int) -> bool:
    rows = await db.pool.fetch("SELECT name FROM targets WHERE id = ANY($1::bigint[])", list(ids))
    return len(rows) == len(ids) and all(r["name"] for r in rows)
