"""Keeps the running swarms in step with the registered targets (read through a `TargetSource`).

Each poll reads targets whose revision grew since the last one (every insert and update takes a new
revision); every `full_every` polls a full pass over active ids also catches a revision committed out of
order. Targets of the same swarm (two rights holders claiming one torrent) share one libtorrent torrent.
With `owned` set (the daemon's leases, see ledger/ownership.py) only those targets are loaded and run.

A swarm that cannot be started (libtorrent refuses its stored metadata, or metadata fetched later breaks
one of our limits) is set aside: its targets get status 'error' with the reason, and every other swarm,
this poll, start-up and a takeover go on. One bad .torrent once stopped every node that leased it.

Incremental: only the swarms whose rows changed (added, updated, removed, found broken) are regrouped and
applied. Regrouping every row on every poll cost ~10 % of a busy node's loop at 5,000 swarms, since
metadata arriving in a few swarms bumps revisions on nearly every poll.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from tracker_watch import log
from tracker_watch.domain.targets import TargetParseError, hint_endpoint, meta_from_info
from tracker_watch.evidence.collector import Collector, TargetRef
from tracker_watch.swarm.announcer import Announcer, Announcers, AnnounceTarget
from tracker_watch.swarm.engine import SwarmEngine
from tracker_watch.swarm.heap import HeapKeeper
from tracker_watch.swarm.pacing import Pacer
from tracker_watch.swarm.swarm import SwarmSpec
from tracker_watch.swarm.targets import TargetSource, WatchedTarget

_log = log.get("tracker_watch.swarm")
# Swarms started (or stopped) between two yields to the event loop: starting one holds the loop ~0.2 ms
# (libtorrent's synchronous add, the Swarm's set-up), so 10,000 new targets in one go held it ~2 s.
APPLY_CHUNK = 64  # ... or fewer, once pacing.SLICE_S went by


@dataclass(frozen=True)
class _Group:
    spec: SwarmSpec
    refs: tuple[TargetRef, ...]


class Watchlist:
    def __init__(self, store: TargetSource, engine: SwarmEngine, collector: Collector,
                 announcer: Announcer | Announcers, poll_s: float, full_every: int = 15, actor: str = "daemon",
                 on_change: Callable[[], None] | None = None, heap: HeapKeeper | None = None) -> None:
        self.store = store
        self.engine = engine
        self.collector = collector
        self.announcer = announcer
        self.poll_s = poll_s
        self.full_every = full_every
        self.rows: dict[int, WatchedTarget] = {}
        self.owned: frozenset[int] | None = None  # None: every active target
        self._lock = asyncio.Lock()  # a lease change and a poll never interleave their reads and writes
        # the latest owned set handed over (`hand_owned`) and not yet applied; None: nothing pending
        self._handed: frozenset[int] | None = None
        self._wake = asyncio.Event()  # set when a set is handed over: the run loop applies it before its next poll
        self.groups: dict[str, _Group] = {}
        self._by_key: dict[str, set[int]] = {}  # swarm key → ids of its rows
        self._dirty: dict[str, None] = {}  # swarms whose rows changed since they were last applied (ordered)
        self._revision = 0
        self._polls = 0
        self.rows_version = 0  # bumped whenever `rows` changes: the daemon's local copy skips a pass that changed none
        self.actor = actor
        self.on_change = on_change  # told after each pass: the daemon keeps its local copy of what runs
        self._broken: dict[int, str] = {}  # target id → why it cannot be watched, until recorded
        self._valid: dict[int, int] = {}  # target id → revision whose stored metadata libtorrent accepted
        self.heap = heap or HeapKeeper()  # started swarms leave the garbage collector's walks (swarm/heap.py)
        engine.on_broken = self._on_broken

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        next_poll = loop.time()
        while True:
            failed = False
            try:
                if self._handed is not None:
                    await self.apply_handed()
                if loop.time() >= next_poll:
                    next_poll = loop.time() + self.poll_s
                    await self.sync_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # database briefly away: keep watching what we have, retry after poll_s
                _log.warning("watchlist_sync_failed", error=str(exc)[:300])
                failed = True
                self._wake.clear()
            if failed or self._handed is None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.0, next_poll - loop.time())):
                        await self._wake.wait()
            self._wake.clear()

    def hand_owned(self, owned: frozenset[int]) -> None:
        """Run exactly these targets, as soon as the watchlist can: the lease heartbeat hands over what it
        committed and never waits. Applying thousands of swarms takes seconds; a heartbeat that waited for it
        missed the lease and fenced the node (BENCHMARKS.md, "Lease fencing at 5,000"). The latest set wins:
        one handed over while another is pending replaces it."""
        self._handed = owned
        self._wake.set()

    @property
    def owned_soon(self) -> frozenset[int] | None:
        """The owned set the watchlist is heading for: the pending one, else the applied one."""
        return self._handed if self._handed is not None else self.owned

    async def apply_handed(self) -> None:
        """Apply the latest handed-over set, if one is pending (the run loop does this; start-up awaits it)."""
        async with self._lock:
            if (owned := self._handed) is not None:
                self._handed = None
                try:
                    await self._set_owned(owned)
                except Exception:  # the database away: keep it for the next try, unless a newer one came
                    if self._handed is None:
                        self._handed = owned
                    raise

    async def set_owned(self, owned: frozenset[int]) -> None:
        """Run exactly these targets (those still active), now: replaces any set handed over before."""
        async with self._lock:
            self._handed = None
            await self._set_owned(owned)

    async def _set_owned(self, owned: frozenset[int]) -> None:
        self.owned = owned
        for gone in set(self.rows) - owned:
            self._drop(gone)
        missing = set(owned) - set(self.rows)
        if missing:
            for row in await self.store.get_many(missing):
                if row.status == "active":
                    self._put(row)
        await self._apply_and_set_aside()

    async def sync_once(self) -> None:
        async with self._lock:
            await self._sync_once()

    async def _sync_once(self) -> None:
        if self.owned is not None and not self.owned:
            for gone in list(self.rows):
                self._drop(gone)
            await self._apply()
            self._changed()
            return
        await self._set_aside()
        for row in await self.store.changed_since(self._revision, None if self.owned is None else set(self.owned)):
            self._revision = max(self._revision, row.revision)
            if row.status == "active":
                self._put(row)
            else:
                self._drop(row.id)
        self._polls += 1
        if self._polls % self.full_every == 0:
            active = await self.store.active_ids()
            if self.owned is not None:
                active = {k: v for k, v in active.items() if k in self.owned}
            for gone in set(self.rows) - set(active):
                self._drop(gone)
            for missing in set(active) - set(self.rows):
                fetched = await self.store.get(missing)
                if fetched is not None and fetched.status == "active":
                    self._put(fetched)
        await self._apply_and_set_aside()

    def _put(self, row: WatchedTarget) -> None:
        """Add or replace a row; its swarm is regrouped at the next apply unless nothing changed."""
        old = self.rows.get(row.id)
        if old == row:
            return
        if old is not None:
            self._unindex(old)
        self.rows[row.id] = row
        self.rows_version += 1
        self._by_key.setdefault(row.key, set()).add(row.id)
        self._dirty[row.key] = None

    def _drop(self, target_id: int) -> WatchedTarget | None:
        row = self.rows.pop(target_id, None)
        if row is not None:
            self._unindex(row)
            self.rows_version += 1
        self._valid.pop(target_id, None)
        return row

    def _unindex(self, row: WatchedTarget) -> None:
        key = row.key
        ids = self._by_key.get(key)
        if ids is not None:
            ids.discard(row.id)
            if not ids:
                del self._by_key[key]
        self._dirty[key] = None

    async def _apply_and_set_aside(self) -> None:
        for key, reason in (await self._apply()).items():
            self._note_broken(key, reason)
        self._changed()
        await self._set_aside()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def _on_broken(self, key: str, reason: str) -> None:
        """The engine found a running swarm unwatchable (e.g. its fetched metadata); the next poll sets it aside."""
        self._note_broken(key, reason)

    def _note_broken(self, key: str, reason: str) -> None:
        for target_id in self._by_key.get(key, ()):
            self._broken[target_id] = reason
            self._dirty[key] = None

    async def _set_aside(self) -> None:
        """Record the broken targets (status 'error' and the reason), then stop running them."""
        by_reason: dict[str, list[int]] = {}
        for target_id, reason in self._broken.items():
            by_reason.setdefault(reason, []).append(target_id)
        for reason, ids in by_reason.items():
            await self.store.mark_error(ids, reason, self.actor)  # raises while the database is away: retried
            for target_id in ids:
                row = self._drop(target_id)
                self._broken.pop(target_id, None)
                _log.error("target_unwatchable", target_id=target_id, infohash=row.key if row else None, error=reason)
        if by_reason:
            for key, reason in (await self._apply()).items():
                self._note_broken(key, reason)  # set aside at the next poll

    def _group(self, key: str) -> _Group | None:
        """The swarm `key` as its current rows want it; None when no watchable row is left."""
        members = sorted((self.rows[i] for i in self._by_key.get(key, ())), key=lambda r: r.id)
        members = [r for r in members if r.id not in self._broken and self._info_ok(r)]
        if not members:
            return None
        first = members[0]
        trackers = tuple(dict.fromkeys(t for r in members for t in r.trackers))
        info = next((r.info for r in members if r.info), None)
        peers = tuple(dict.fromkeys(hint_endpoint(h) for r in members for h in r.peer_hints))
        spec = SwarmSpec(key=key, infohash_v1=first.infohash_v1, infohash_v2=first.infohash_v2, info=info,
                         trackers=trackers, peers=peers)
        return _Group(spec, tuple(TargetRef(r.id, r.infohash_v1, r.infohash_v2) for r in members))

    def _info_ok(self, row: WatchedTarget) -> bool:
        """A target's stored metadata must be what libtorrent accepts; one holder's broken copy never takes the
        swarm away from another holder whose copy is fine. Checked once per revision of the row."""
        if row.info is None or self._valid.get(row.id) == row.revision:
            return True
        try:
            meta_from_info(row.info)
        except TargetParseError as exc:
            self._broken[row.id] = str(exc)
            return False
        self._valid[row.id] = row.revision
        return True

    async def _apply(self) -> dict[str, str]:
        """Make the swarms whose rows changed run as their rows want; returns {key: reason} of those that
        could not start. Yields to the event loop every APPLY_CHUNK swarms started or stopped, so that alerts,
        the API and the verifier keep running while thousands of targets arrive. `groups` is updated as each
        swarm starts: a swarm's metadata may arrive before the last chunk, and must find its group. A pass
        cancelled half-way leaves what it did not apply marked, for the next one."""
        pace = Pacer(APPLY_CHUNK)
        wanted: dict[str, _Group] = {}
        broken: dict[str, str] = {}
        try:
            for key in list(self._dirty):
                group = self._group(key)
                del self._dirty[key]  # a change from here on (the engine finding it broken) marks it again
                if group is not None:
                    wanted[key] = group
                elif key in self.groups:
                    self._stop(key)
                    self.groups.pop(key, None)
                    self.heap.stopped()
                # grouping costs ~30 µs a swarm: 10,000 new targets held the loop ~0.3 s before the first start
                await pace.step()
            for key, group in wanted.items():
                await self._apply_one(key, group, broken, pace)
            self.heap.settle()
        except BaseException:  # cancelled half-way (shutdown, a lost lease): what is left stays to be applied
            for key, group in wanted.items():
                if self.groups.get(key) is not group and key not in broken:
                    self._dirty[key] = None
            raise
        return broken

    async def _apply_one(self, key: str, group: _Group, broken: dict[str, str], pace: Pacer) -> None:
        old = self.groups.get(key)
        try:
            self._start_or_update(old, group)
        except Exception as exc:  # whatever one swarm does, the others run
            self._stop(key)
            self.groups.pop(key, None)
            broken[key] = " ".join(str(exc).split())[:300] or type(exc).__name__
            return
        self.groups[key] = group
        # a regrouped swarm grew too (its metadata arrived: the stored info, its spec, the engine's piece
        # tracker): at 10,000 swarms those objects, never frozen, made one full collection walk ~0.6 M objects
        self.heap.started()
        await pace.step()

    def _start_or_update(self, old: _Group | None, group: _Group) -> None:
        if old is None:
            self.collector.set_targets(group.spec.key, list(group.refs))
            self.engine.watch(group.spec)
            self.announcer.track(_announce_target(group.spec))
            return
        if old.refs != group.refs:
            self.collector.set_targets(group.spec.key, list(group.refs))
        if old.spec.trackers != group.spec.trackers:
            self.announcer.track(_announce_target(group.spec))

    def _stop(self, key: str) -> None:
        self.announcer.untrack(key)
        self.engine.unwatch(key)
        self.collector.set_targets(key, [])


def _announce_target(spec: SwarmSpec) -> AnnounceTarget:
    hashes = tuple(h[:20] for h in (spec.infohash_v1, spec.infohash_v2) if h)
    return AnnounceTarget(key=spec.key, info_hashes=hashes, trackers=spec.trackers)
