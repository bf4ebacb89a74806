"""The daemon's lifecycle: start in order, run until told to stop, stop in reverse order.

Start: spool (replayed as soon as the database is up) → database (configured or embedded; migrations)
→ evidence batcher → swarm engine → tracker announcer → watchlist → leases and targets, API, ledger jobs.
A configured database that does not answer at start is no reason not to monitor: the node runs what its
local copy (`<state_dir>/local-copy`, see swarm/local_copy.py) says it ran, spools every observation and
retries with back-off; when the database answers it reconciles — migrations, a lease heartbeat that yields
whatever another node took meanwhile, the spool written (observation ids make that idempotent) — and only
then serves the API. Stop reverses that within `daemon.shutdown_grace_s`: the swarms stop first, the leases
are handed back at once, then the writer flushes what it can; whatever it cannot stays in the spool.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY

from tracker_watch import SOFTWARE, log, metrics, systemd
from tracker_watch import daemon_jobs as jobs
from tracker_watch.beat_thread import BeatThread
from tracker_watch.config import Settings
from tracker_watch.domain.torrents import TorrentMeta
from tracker_watch.evidence.batcher import Batcher
from tracker_watch.evidence.collector import Collector
from tracker_watch.evidence.process_sink import ProcessSink
from tracker_watch.evidence.sinks import InOrder
from tracker_watch.evidence.spool import Spool
from tracker_watch.ledger import signing
from tracker_watch.ledger.db import Database, is_outage
from tracker_watch.ledger.evidence import EvidenceWriter
from tracker_watch.ledger.outbox import Outbox
from tracker_watch.ledger.ownership import Beat, Ownership
from tracker_watch.ledger.strikes import StrikeLedger
from tracker_watch.node_targets import CopyKeeper, DatabaseAway, NodeTargets
from tracker_watch.pending_metadata import PendingMetadata
from tracker_watch.swarm.announcer import Announcers, announcers_for
from tracker_watch.swarm.engine import SwarmEngine
from tracker_watch.swarm.fdlimit import files_needed, raise_open_files
from tracker_watch.swarm.local_copy import LocalCopy
from tracker_watch.swarm.swarm import Swarm
from tracker_watch.swarm.watchlist import Watchlist

_log = log.get("tracker_watch.daemon")


def lt_version() -> str:
    import libtorrent as lt

    return str(lt.__version__)


class Daemon:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db = Database(settings)
        self.stopping = asyncio.Event()
        self.started = asyncio.Event()
        self.batcher: Batcher | None = None
        self.writer: EvidenceWriter | None = None
        self.strikes: StrikeLedger | None = None
        self.api: Any = None
        self.metrics_server: metrics.MetricsServer | None = None
        self._collector: metrics.DaemonCollector | None = None
        self.version = SOFTWARE
        self.libtorrent_version = lt_version()
        self.outbox: Outbox | None = None
        self.collector: Collector | None = None
        self.engine: SwarmEngine | None = None
        self.announcer: Announcers | None = None
        self.watchlist: Watchlist | None = None
        self.ownership: Ownership | None = None  # its calls run on the heartbeat's own loop (beat_thread.py)
        self._beats = BeatThread()
        self._beat_pool: Any = None
        self._beat_lock = asyncio.Lock()  # hand-overs one at a time
        self._handing: set[asyncio.Task[None]] = set()
        self._seen_pulse: tuple[Any, ...] | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self.targets = NodeTargets()  # the ledger once connected; the local copy until then
        self.copy_keeper = CopyKeeper(LocalCopy(settings.node.state_dir / "local-copy"))
        self.metadata = PendingMetadata(settings.node.state_dir / "pending-metadata")  # stored when the db answers
        self.online = False  # leases, API and ledger jobs running (the database answered and was reconciled)

    async def start(self) -> None:
        # from the start: taking over thousands of targets at start-up is when the loop is most at risk
        lag = asyncio.create_task(metrics.watch_loop_lag(), name="loop-lag")
        self._tasks = [lag]
        try:
            await self._start()
        except BaseException:
            lag.cancel()
            raise

    async def _start(self) -> None:
        s = self.settings
        t0 = time.monotonic()
        spool = Spool(Path(s.spool.dir) if s.spool.dir else s.node.state_dir / "spool", s.spool.max_bytes,
                      s.spool.segment_bytes)
        spool.open()  # first: a second daemon on this state directory stops here
        self.metadata.load()  # fetched by an earlier run that could not store it
        sink = ProcessSink() if s.collector.writer == "process" else InOrder(self._evidence_writer)
        self.batcher = Batcher(lambda batch: self._evidence_writer().write(batch), spool, s.collector.batch_size,
                               s.collector.flush_interval_s, s.spool.fsync_interval_s, s.database.write_timeout_s,
                               s.spool.near_full_ratio, sink=sink, depth=2)  # the next batch prepared meanwhile
        if spool.pending_records:
            _log.info("spool_replay", records=spool.pending_records, spool_bytes=spool.pending_bytes)
        try:
            await self.db.start_or_wait()  # a server that does not answer is waited for in the background
        except BaseException:
            spool.close()
            raise
        self.batcher.start()
        self.collector = Collector(s.node.name, SOFTWARE, self.batcher.put, s.collector.reobserve_s,
                                   change_gap_s=s.swarm.peer_refresh_s)
        raise_open_files(files_needed(s.swarm, s.verify))  # before the session: libtorrent sizes itself by it
        self.engine = engine = SwarmEngine(s, self.collector.handle, on_metadata=self._on_metadata)
        await self.engine.start()
        self.announcer = announcers_for(s, engine)
        await self.announcer.start()
        self.watchlist = Watchlist(self.targets, self.engine, self.collector, self.announcer, s.daemon.target_poll_s,
                                   actor=f"node:{s.node.name}", on_change=self._copy_changed)
        if s.metrics.enabled:
            metrics.init_label_sets()
            self._collector = metrics.DaemonCollector(self, s.metrics.per_target_limit)
            REGISTRY.register(self._collector)
            self.metrics_server = metrics.MetricsServer(s.metrics.listen)
            await self.metrics_server.start()
        try:
            if self.db.connected:
                await self._online()  # take our leases (our own at once after a crash) and resume those targets
        except Exception as exc:
            if not is_outage(exc):
                raise
            _log.error("database_lost_at_start", error=(str(exc) or type(exc).__name__)[:300])
        if not self.online:
            await self._start_offline()
        self._tasks += [asyncio.create_task(self.watchlist.run(), name="watchlist"),
                        asyncio.create_task(self.metadata.run(), name="metadata"),
                        asyncio.create_task(jobs.every(60.0, self._forget_idle), name="forget-idle")]
        if (interval := systemd.watchdog_interval()) is not None:
            self._tasks.append(asyncio.create_task(systemd.watchdog_loop(interval), name="watchdog"))
        self.started.set()
        systemd.notify(f"READY=1\nSTATUS=watching {len(self.engine.swarms)} swarms")
        _log.info("daemon_started", version=SOFTWARE, targets=len(self.watchlist.rows), database=self.online,
                  swarms=len(self.engine.swarms), seconds=round(time.monotonic() - t0, 2), **self.listening())

    async def _online(self) -> None:
        """The database answers: write evidence, read targets from it, lease, serve the API, run the ledger jobs.
        After a start without the database this is the reconciliation: the heartbeat re-reads the leases
        (those another node took meanwhile are yielded) and the batcher writes the spool."""
        s, pool = self.settings, self.db.pool
        self.writer = EvidenceWriter(pool, s.node.name, signing.load_or_create(s.node.state_dir),
                                     s.evidence.incident_window_s, s.evidence.checkpoint_every,
                                     s.evidence.checkpoint_interval_s)
        self.targets.connect(pool)
        assert self.batcher is not None
        jobs.connect_sink(self.batcher.sink, self.db.dsn, self.writer.key.private_bytes_raw(), s)
        assert self.watchlist is not None
        spool = self.batcher.spool
        if self._beat_pool is None:
            self._beat_pool = await self._beats.call(self.db.side_pool())
        self.ownership = Ownership(self._beat_pool, s.node.name, SOFTWARE, s.node.max_targets, s.node.lease_ttl_s,
                                   s.node.heartbeat_s, lambda: (spool.pending_records, spool.pending_bytes))
        await self._heartbeat()
        await self.watchlist.apply_handed()  # start() returns once every target we hold runs
        if self.ownership.valid_until - time.monotonic() < s.node.heartbeat_s:
            await self._heartbeat()  # that took most of the lease: renew before the fence's first look
        self.batcher.kick()  # write the spool now rather than at the end of the batcher's back-off
        metrics.LOCAL_COPY_TARGETS.set(0)
        self.metadata.connect(pool)  # what was fetched while the database was away, and what comes
        if s.api.enabled and self.api is None:
            from tracker_watch.api.app import ApiServer

            self.api = ApiServer(pool, s, self.engine, self.watchlist, read_pool=self.db.read_pool)
            await self.api.start()
        self.strikes = StrikeLedger(pool, s)
        self.outbox = Outbox(pool, s.notices, s.evidence.incident_window_s)
        if s.metrics.enabled:
            await metrics.refresh_database_gauges(pool)
        periodic = {"fence": (min(1.0, s.node.heartbeat_s / 4), self._fence),
                    "new-targets": (s.daemon.target_poll_s, self._new_targets), "retention": (3600.0, self._retention),
                    "metrics": (s.metrics.refresh_s, lambda: metrics.refresh_database_gauges(pool)),
                    "checkpoint": (s.evidence.checkpoint_interval_s, self._checkpoint),
                    "strikes": (s.policy.evaluate_interval_s, self._evaluate_strikes),
                    "outbox": (s.notices.delivery_interval_s, self._deliver_notices)}
        await jobs.warn_placeholders(s, pool)
        self._tasks += [asyncio.create_task(jobs.every(every, job), name=name)
                        for name, (every, job) in periodic.items()]  # last: a retried _online adds them once
        self._tasks.append(asyncio.create_task(self._beats.every(s.node.heartbeat_s, self.ownership.beat,
                                                                 self._beaten), name="heartbeat"))
        self.online = True

    async def _start_offline(self) -> None:
        """Run what the local copy says this node ran, and keep trying the database."""
        assert self.watchlist is not None
        self.targets.store = None  # (the database may have gone again half-way through _online)
        loaded = await asyncio.to_thread(self.copy_keeper.copy.load)
        if loaded.problems:
            _log.error("local_copy_unusable" if not loaded.targets else "local_copy_incomplete",
                       problems=loaded.problems[:20], count=len(loaded.problems), targets=len(loaded.targets),
                       note="monitoring what the copy holds until the database answers")
        self.targets.offline = loaded.targets
        metrics.LOCAL_COPY_TARGETS.set(len(loaded.targets))
        await self.watchlist.set_owned(loaded.owned)
        _log.info("started_from_local_copy", targets=len(self.watchlist.rows), swarms=len(self.watchlist.groups))
        self._tasks.append(asyncio.create_task(self._reconnect(), name="reconnect"))

    async def _reconnect(self) -> None:
        delay = 1.0
        while True:
            await asyncio.sleep(delay)
            try:
                if not self.db.connected:
                    await self.db.start()
                await self._online()
            except Exception as exc:
                metrics.DATABASE_UP.set(0)
                _log.warning("database_reconnect_failed", error=(str(exc) or type(exc).__name__)[:300],
                             outage=is_outage(exc), retry_in_s=delay)
                delay = min(delay * 2, 30.0)
                continue
            _log.info("database_reconnected", targets=len(self.watchlist.rows) if self.watchlist else 0)
            return

    def _evidence_writer(self) -> EvidenceWriter:
        if self.writer is None:
            raise DatabaseAway("database not connected yet: the batch stays in the spool")
        return self.writer

    def _copy_changed(self) -> None:
        """The watchlist changed what it runs: keep the local copy in step (only what the database said)."""
        if self.watchlist is not None and self.targets.store is not None:
            self.copy_keeper.changed(self.watchlist.owned or frozenset(), self.watchlist.rows,
                                     self.watchlist.rows_version)

    def listening(self) -> dict[str, Any]:
        """The addresses actually bound (a configured port 0 becomes the port the OS chose)."""
        s = self.settings
        out: dict[str, Any] = {}
        if self.engine is not None:
            port = self.engine.listen_port()
            out["peers_listen"] = [f"{item.rpartition(':')[0]}:{port}" for item in s.swarm.listen_interfaces]
        if self.api is not None:
            out["api_listen"] = f"{s.api.listen.rpartition(':')[0]}:{self.api.port}"
        if self.metrics_server is not None:
            out["metrics_listen"] = f"{s.metrics.listen.rpartition(':')[0]}:{self.metrics_server.port}"
        return out

    async def run(self) -> None:
        """Start, wait for SIGTERM/SIGINT (or `request_stop`), stop."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig.name)
        try:
            await self.start()
            await self.stopping.wait()
        finally:
            await self.stop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    def request_stop(self, reason: str = "requested") -> None:
        if not self.stopping.is_set():
            _log.info("daemon_stopping", reason=reason)
            self.stopping.set()

    async def stop(self) -> None:
        systemd.notify("STOPPING=1\nSTATUS=stopping: writing what is pending")
        for task in self._tasks:  # no WATCHDOG=1 after STOPPING=1 (cancelled before the next await)
            if task.get_name() == "watchdog":
                task.cancel()
        deadline = time.monotonic() + self.settings.daemon.shutdown_grace_s
        if self.api is not None:
            await self.api.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self.announcer is not None:
            await self.announcer.stop()
        if self.engine is not None:
            try:
                await asyncio.wait_for(self.engine.stop(), timeout=max(1.0, (deadline - time.monotonic()) / 2))
            except TimeoutError:
                _log.error("swarm_engine_stop_timeout")
        await self.metadata.flush(timeout=max(0.1, (deadline - time.monotonic()) / 3))
        if self.ownership is not None:
            try:  # hand the targets to the other nodes now rather than after the lease TTL
                released = await asyncio.wait_for(self._beats.call(self.ownership.release_all()),
                                                  timeout=max(0.1, (deadline - time.monotonic()) / 4))
                _log.info("leases_released", count=released)
            except Exception as exc:
                _log.warning("lease_release_failed", error=(str(exc) or type(exc).__name__)[:300],
                             note="the leases lapse after node.lease_ttl_s")
        unwritten = 0
        if self.batcher is not None:
            grace = deadline - time.monotonic() - 1.0 if self.writer is not None else 0.0
            unwritten = await self.batcher.stop(timeout=max(0.5, grace))
        if self.writer is not None:
            try:  # seal what was written with a signed checkpoint
                await asyncio.wait_for(self.writer.checkpoint(), timeout=max(0.1, deadline - time.monotonic()))
            except Exception as exc:
                _log.warning("final_checkpoint_failed", error=str(exc)[:300])
        if self.outbox is not None:
            await self.outbox.close()
        if self.metrics_server is not None:
            await self.metrics_server.stop()
        if self._collector is not None:
            REGISTRY.unregister(self._collector)
            self._collector = None
        await self.copy_keeper.close()
        if self._beat_pool is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._beats.call(self._beat_pool.close()), timeout=2.0)
            self._beat_pool = None
        await self._beats.close()
        await self.db.stop()
        _log.info("daemon_stopped", unwritten=unwritten,
                  written=self.batcher.written if self.batcher else 0)

    def _on_metadata(self, swarm: Swarm, info: bytes, meta: TorrentMeta) -> None:
        assert self.watchlist is not None
        group = self.watchlist.groups.get(swarm.key)
        if group is None:
            return
        self.metadata.add(swarm.key, [r.target_id for r in group.refs], info, meta)

    async def _heartbeat(self) -> None:
        """An early beat (new targets, start-up): committed on the heartbeat's own loop, then handed over. The
        periodic beats run there on their own schedule (beat_thread.py) and are handed over the same way."""
        assert self.ownership is not None
        await self._hand_over(await self._beats.call(self._beats.one_at_a_time(self.ownership.beat)))

    def _beaten(self, beat: Beat) -> None:
        task = asyncio.create_task(self._hand_over(beat), name="hand-over")
        self._handing.add(task)
        task.add_done_callback(self._handing.discard)

    async def _hand_over(self, beat: Beat) -> None:
        """Hand what we hold to the watchlist, which applies the latest set when it can: a beat never waits for
        it (applying thousands of swarms takes seconds, and a beat stuck behind it let the lease lapse)."""
        assert self.watchlist is not None
        assert self.ownership is not None
        async with self._beat_lock:
            await jobs.name_targets(self.db.pool, self.watchlist.groups, beat.owned)  # before their swarms log
            self.watchlist.hand_owned(self.ownership.valid())  # empty if the beat took longer than the lease

    async def _new_targets(self) -> None:
        """Beat early when targets were added or changed, this node was drained or undrained, or another node
        handed swarms back: new targets start, and a drain moves every swarm, within daemon.target_poll_s."""
        assert self.ownership is not None
        pulse = await self._beats.call(self.ownership.pulse())
        if pulse != self._seen_pulse:
            self._seen_pulse = pulse
            await self._heartbeat()

    async def _fence(self) -> None:
        """Stop every swarm once our leases may have lapsed: no heartbeat committed for lease_ttl_s − heartbeat_s
        (database away), after which another node may take them. The next heartbeat that commits resumes what
        we still hold; what we observed until now is in the spool and is written when the database is back."""
        assert self.ownership is not None
        assert self.watchlist is not None
        if not self.watchlist.owned_soon or self.ownership.valid():
            return
        _log.warning("leases_fenced", swarms=len(self.watchlist.groups), targets=len(self.watchlist.owned or ()),
                     note="no heartbeat reached the database within the lease; stopped until one does")
        metrics.LEASE_CHANGES.labels(change="fenced").inc(len(self.ownership.swarms))
        self.watchlist.hand_owned(frozenset())
        try:
            await asyncio.wait_for(self.watchlist.apply_handed(), timeout=1.0)
        except TimeoutError:  # the watchlist is busy (a long pass, or waiting on the database): interrupt it
            task = next(t for t in self._tasks if t.get_name() == "watchlist")
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await self.watchlist.set_owned(frozenset())
            self._tasks[self._tasks.index(task)] = asyncio.create_task(self.watchlist.run(), name="watchlist")

    async def _forget_idle(self) -> None:
        await jobs.forget_idle(self.collector, self.engine)

    async def _checkpoint(self) -> None:
        """Seal new evidence even when no batch makes a checkpoint due (quiet periods)."""
        if self.writer is not None:
            await self.writer.checkpoint()

    async def _evaluate_strikes(self) -> None:
        assert self.strikes is not None
        await jobs.evaluate_strikes(self.strikes, self.settings)

    async def _deliver_notices(self) -> None:
        assert self.outbox is not None
        await self.outbox.deliver_due()

    async def _retention(self) -> None:
        await jobs.retention(self.db.pool, self.settings)
