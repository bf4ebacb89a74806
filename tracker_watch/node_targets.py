"""The daemon's wiring of targets to the swarm layer (`swarm/targets.py`'s `TargetSource`).

While PostgreSQL answers, targets come from the ledger's `TargetStore`; while it does not (a node that
started during an outage), from the node's local copy (`swarm/local_copy.py`): the same targets it ran
before, nothing new, nothing changed, and nothing can be set aside until the database is back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from tracker_watch import log
from tracker_watch.ledger.targets import TargetRow, TargetStore
from tracker_watch.swarm.local_copy import LocalCopy
from tracker_watch.swarm.targets import WatchedTarget

_log = log.get("tracker_watch.daemon")


class DatabaseAway(RuntimeError):
    """The database is not connected yet (the node started during an outage)."""


def watched(row: TargetRow) -> WatchedTarget:
    return WatchedTarget(id=row.id, infohash_v1=row.infohash_v1, infohash_v2=row.infohash_v2, trackers=row.trackers,
                         status=row.status, info=row.info, revision=row.revision, peer_hints=row.peer_hints)


class NodeTargets:
    def __init__(self, offline: dict[int, WatchedTarget] | None = None) -> None:
        self.store: TargetStore | None = None
        self.offline = offline or {}

    def connect(self, pool: Any) -> None:
        """The database is up: from now on the ledger is the source (the local copy is no longer read)."""
        self.store = TargetStore(pool)
        self.offline = {}

    async def get(self, target_id: int) -> WatchedTarget | None:
        if self.store is None:
            return self.offline.get(target_id)
        row = await self.store.get(target_id)
        return watched(row) if row is not None else None

    async def get_many(self, ids: set[int]) -> Sequence[WatchedTarget]:
        if self.store is None:
            return [self.offline[i] for i in sorted(ids) if i in self.offline]
        return [watched(r) for r in await self.store.get_many(ids)]

    async def changed_since(self, revision: int, ids: set[int] | None = None) -> Sequence[WatchedTarget]:
        if self.store is None:
            return []  # the copy does not change
        return [watched(r) for r in await self.store.changed_since(revision, ids)]

    async def active_ids(self) -> dict[int, int]:
        if self.store is None:
            return {t.id: t.revision for t in self.offline.values() if t.status == "active"}
        return await self.store.active_ids()

    async def mark_error(self, target_ids: list[int], reason: str, actor: str) -> list[int]:
        if self.store is None:
            raise DatabaseAway("database not connected: the target is set aside once it is")
        return await self.store.mark_error(target_ids, reason, actor)


class CopyKeeper:
    """Writes the local copy after each change of what the node runs: in a worker thread (fsyncs), one save at a
    time, and of a burst of changes only the last (the copy is a snapshot, not a log). A change is told by the
    watchlist's `rows_version` and the owned set, so a pass that changed nothing costs nothing: comparing sorted
    (id, revision) pairs of every row on each poll was O(n log n) every 2 s at 5,000 swarms."""

    def __init__(self, copy: LocalCopy) -> None:
        self.copy = copy
        self._owned: frozenset[int] | None = None
        self._version = -1
        self._wanted: tuple[frozenset[int], dict[int, WatchedTarget]] | None = None
        self._task: asyncio.Task[None] | None = None

    def changed(self, owned: frozenset[int], rows: Mapping[int, WatchedTarget], version: int) -> None:
        """`version` changes whenever `rows` does (Watchlist.rows_version)."""
        if version == self._version and (owned is self._owned or owned == self._owned):
            return
        self._owned, self._version = owned, version
        self._wanted = (owned, dict(rows))  # the worker thread reads a snapshot, never the live dict
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._save(), name="local-copy")

    async def _save(self) -> None:
        while self._wanted is not None:
            (owned, rows), self._wanted = self._wanted, None
            try:
                await asyncio.to_thread(self.copy.save, owned, rows)
            except OSError as exc:  # the copy only matters at a start without the database
                _log.warning("local_copy_write_failed", error=str(exc)[:300])

    async def close(self) -> None:
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

