"""Metadata fetched from a swarm (a magnet's info dict, from peers), on its way to the targets' rows.

The database may be away when an info dict arrives: a node started without it, or a running node whose
database went down. Nothing is lost meanwhile: each info dict is first written to
`<state_dir>/pending-metadata/<infohash hex>` (a temporary name renamed over, so never half a file), then
stored with its targets, retried with back-off while the database does not answer, and its file removed
once stored. A node stopped before that finds the files at its next start and stores them then. Files are
written by a worker thread, a batch at a time, before the batch is stored: 1,000 swarms whose metadata came in
one batch of alerts wrote 1,000 files on the event loop in one callback (15 % of a busy node's CPU, BENCHMARKS.md,
capacity under load). The write
(TargetStore.set_metadata) only fills targets without metadata, so one repeated after an answer that was
lost stores nothing twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tracker_watch import log
from tracker_watch.domain.targets import TargetParseError, meta_from_info
from tracker_watch.domain.torrents import TorrentMeta
from tracker_watch.ledger.targets import TargetStore

_log = log.get("tracker_watch.daemon")


@dataclass(frozen=True)
class _Entry:
    ids: tuple[int, ...]
    info: bytes
    meta: TorrentMeta


class PendingMetadata:
    BATCH = 1000

    def __init__(self, directory: Path, retry_s: float = 1.0, max_retry_s: float = 30.0) -> None:
        self.directory = directory
        self.retry_s, self.max_retry_s = retry_s, max_retry_s
        self.pending: dict[str, _Entry] = {}  # infohash hex → what waits to be stored
        self._unsaved: dict[str, _Entry] = {}  # of those, not yet in a file
        self._pool: Any = None
        self._wake = asyncio.Event()

    def load(self) -> None:
        """What an earlier run fetched and could not store; a damaged file is reported and removed."""
        for path in sorted(self.directory.glob("*.json")) if self.directory.is_dir() else []:
            try:
                body = json.loads(path.read_bytes())
                info = bytes.fromhex(body["info"])
                self.pending[path.stem] = _Entry(tuple(int(i) for i in body["ids"]), info, meta_from_info(info))
            except (OSError, ValueError, KeyError, TypeError, TargetParseError) as exc:
                _log.error("pending_metadata_unreadable", file=str(path), error=str(exc)[:300])
                path.unlink(missing_ok=True)
        if self.pending:
            _log.info("pending_metadata_loaded", swarms=len(self.pending))
            self._wake.set()

    def add(self, key: str, ids: list[int], info: bytes, meta: TorrentMeta) -> None:
        old = self.pending.get(key)
        entry = _Entry(tuple(sorted({*ids, *(old.ids if old else ())})), info, meta)
        self.pending[key] = self._unsaved[key] = entry  # its file is written off the loop (run, flush)
        self._wake.set()

    def connect(self, pool: Any) -> None:
        """The database answers: store what waits (and from now on, what arrives)."""
        self._pool = pool
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            delay = self.retry_s
            await self._persist()
            while self.pending and self._pool is not None:
                await self._persist()  # what arrived meanwhile: a file before it is stored
                if await self._store_some():
                    delay = self.retry_s
                else:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.max_retry_s)

    async def flush(self, timeout: float) -> None:
        """One last try, at stop; what is not stored stays in its file for the next start."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._persist()
                while self.pending and self._pool is not None:
                    if not await self._store_some():
                        return

    async def _store_some(self) -> bool:
        """Up to BATCH swarms in one statement: thousands of swarms get their metadata within seconds of each
        other, and a statement each queued them for the pool's connections ahead of everything else. A batch
        that fails is tried one by one, so one swarm that keeps failing holds up no other."""
        saved = ((key, e) for key, e in self.pending.items() if key not in self._unsaved)  # a file first
        batch = list(itertools.islice(saved, self.BATCH))
        if not batch:
            return True
        try:
            await TargetStore(self._pool).set_metadata_many([(e.ids, e.info, e.meta) for _, e in batch])
        except Exception as exc:  # the database may be away, or one row bad: find out one by one
            _log.warning("metadata_store_failed", swarms=len(batch), error=(str(exc) or type(exc).__name__)[:300])
            return any([await self._store_one(key, entry) for key, entry in batch]) if len(batch) > 1 else \
                await self._store_one(*batch[0])
        for key, entry in batch:
            self._stored(key, entry)
        return True

    async def _store_one(self, key: str, entry: _Entry) -> bool:
        try:
            await TargetStore(self._pool).set_metadata(list(entry.ids), entry.info, entry.meta)
        except Exception as exc:  # kept, and tried again: the database may be away, or the pool reconnecting
            _log.warning("metadata_store_failed", infohash=key, targets=len(entry.ids),
                         error=(str(exc) or type(exc).__name__)[:300])
            if key in self.pending:  # to the back: one that keeps failing holds up no other
                self.pending[key] = self.pending.pop(key)
            return False
        self._stored(key, entry)
        return True

    def _stored(self, key: str, entry: _Entry) -> None:
        if self.pending.get(key) is entry:  # not replaced meanwhile (more targets of the swarm): done
            del self.pending[key]
            with contextlib.suppress(OSError):
                (self.directory / f"{key}.json").unlink(missing_ok=True)

    async def _persist(self) -> None:
        """Write the files of what arrived since the last call, in a worker thread."""
        if self._unsaved:
            batch, self._unsaved = self._unsaved, {}
            await asyncio.to_thread(self._save_many, batch)

    def _save_many(self, batch: dict[str, _Entry]) -> None:
        for key, entry in batch.items():
            try:
                self._save(key, entry)
            except OSError as exc:  # kept in memory all the same: lost only if the node stops before it is stored
                _log.error("pending_metadata_not_saved", infohash=key, error=str(exc)[:300])

    def _save(self, key: str, entry: _Entry) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{key}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"ids": list(entry.ids), "info": entry.info.hex()}))
        os.replace(tmp, path)
