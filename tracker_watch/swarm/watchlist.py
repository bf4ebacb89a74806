"""Keeps the running swarms in step with the targets table.

Each poll reads targets whose revision grew since the last one (every insert and update takes a new
revision); every `full_every` polls a full pass over active ids also catches a revision committed out of
order. Targets of the same swarm (two rights holders claiming one torrent) share one libtorrent torrent.
With `owned` set (the daemon's leases, see ledger/ownership.py) only those targets are loaded and run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

from tracker_watch import log
from tracker_watch.evidence.collector import Collector, TargetRef
from tracker_watch.ledger.targets import TargetRow, TargetStore
from tracker_watch.swarm.announcer import Announcer, AnnounceTarget
from tracker_watch.swarm.engine import SwarmEngine
from tracker_watch.swarm.swarm import SwarmSpec

_log = log.get("tracker_watch.swarm")


@dataclass(frozen=True)
class _Group:
    spec: SwarmSpec
    refs: tuple[TargetRef, ...]


class Watchlist:
    def __init__(self, store: TargetStore, engine: SwarmEngine, collector: Collector, announcer: Announcer,
                 poll_s: float, full_every: int = 15) -> None:
        self.store = store
        self.engine = engine
        self.collector = collector
        self.announcer = announcer
        self.poll_s = poll_s
        self.full_every = full_every
        self.rows: dict[int, TargetRow] = {}
        self.owned: frozenset[int] | None = None  # None: every active target
        self._lock = asyncio.Lock()  # a lease change and a poll never interleave their reads and writes
        self.groups: dict[str, _Group] = {}
        self._revision = 0
        self._polls = 0

    async def run(self) -> None:
        while True:
            try:
                await self.sync_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # database briefly away: keep watching what we have
                _log.warning("watchlist_sync_failed", error=str(exc)[:300])
            await asyncio.sleep(self.poll_s)

    async def set_owned(self, owned: frozenset[int]) -> None:
        """Run exactly these targets (those still active): called after each lease heartbeat."""
        async with self._lock:
            await self._set_owned(owned)

    async def _set_owned(self, owned: frozenset[int]) -> None:
        self.owned = owned
        for gone in set(self.rows) - owned:
            del self.rows[gone]
        missing = set(owned) - set(self.rows)
        if missing:
            for row in await self.store.get_many(missing):
                if row.status == "active":
                    self.rows[row.id] = row
        self._apply(self._group(self.rows.values()))

    async def sync_once(self) -> None:
        async with self._lock:
            await self._sync_once()

    async def _sync_once(self) -> None:
        if self.owned is not None and not self.owned:
            self._apply({})
            return
        for row in await self.store.changed_since(self._revision, None if self.owned is None else set(self.owned)):
            self._revision = max(self._revision, row.revision)
            if row.status == "active":
                self.rows[row.id] = row
            else:
                self.rows.pop(row.id, None)
        self._polls += 1
        if self._polls % self.full_every == 0:
            active = await self.store.active_ids()
            if self.owned is not None:
                active = {k: v for k, v in active.items() if k in self.owned}
            for gone in set(self.rows) - set(active):
                del self.rows[gone]
            for missing in set(active) - set(self.rows):
                fetched = await self.store.get(missing)
                if fetched is not None and fetched.status == "active":
                    self.rows[missing] = fetched
        self._apply(self._group(self.rows.values()))

    @staticmethod
    def _group(rows: Iterable[TargetRow]) -> dict[str, _Group]:
        by_key: dict[str, list[TargetRow]] = {}
        for row in rows:
            by_key.setdefault(row.key, []).append(row)
        groups = {}
        for key, members in by_key.items():
            members.sort(key=lambda r: r.id)
            first = members[0]
            trackers = tuple(dict.fromkeys(t for r in members for t in r.trackers))
            info = next((r.info for r in members if r.info), None)
            spec = SwarmSpec(key=key, infohash_v1=first.infohash_v1, infohash_v2=first.infohash_v2, info=info,
                             trackers=trackers)
            refs = tuple(TargetRef(r.id, r.infohash_v1, r.infohash_v2) for r in members)
            groups[key] = _Group(spec, refs)
        return groups

    def _apply(self, wanted: dict[str, _Group]) -> None:
        for key in set(self.groups) - set(wanted):
            self.announcer.untrack(key)
            self.engine.unwatch(key)
            self.collector.set_targets(key, [])
        for key, group in wanted.items():
            old = self.groups.get(key)
            if old is None:
                self.collector.set_targets(key, list(group.refs))
                self.engine.watch(group.spec)
                self.announcer.track(_announce_target(group.spec))
                continue
            if old.refs != group.refs:
                self.collector.set_targets(key, list(group.refs))
            if old.spec.trackers != group.spec.trackers:
                self.announcer.track(_announce_target(group.spec))
        self.groups = wanted


def _announce_target(spec: SwarmSpec) -> AnnounceTarget:
    hashes = tuple(h[:20] for h in (spec.infohash_v1, spec.infohash_v2) if h)
    return AnnounceTarget(key=spec.key, info_hashes=hashes, trackers=spec.trackers)
