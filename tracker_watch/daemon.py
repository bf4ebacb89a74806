"""The daemon's lifecycle: start in order, run until told to stop, stop in reverse order.

Start: spool (replayed as soon as the database is up) → database (embedded or configured; migrations)
→ evidence writer → swarm engine → tracker announcer → leases and watchlist (targets). Stop reverses
that within `daemon.shutdown_grace_s`: the swarms stop first, the leases are handed back at once, then
the writer flushes what it can; whatever it cannot stays in the spool for the next start.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY

from tracker_watch import SOFTWARE, log, metrics, systemd
from tracker_watch.config import Settings
from tracker_watch.domain.evidence import utc_now_ms
from tracker_watch.domain.peerwire import new_peer_id
from tracker_watch.domain.torrents import TorrentMeta
from tracker_watch.evidence.batcher import Batcher
from tracker_watch.evidence.collector import Collector
from tracker_watch.evidence.spool import Spool
from tracker_watch.ledger import retention, signing
from tracker_watch.ledger.db import Database
from tracker_watch.ledger.evidence import EvidenceWriter
from tracker_watch.ledger.outbox import Outbox
from tracker_watch.ledger.ownership import Ownership
from tracker_watch.ledger.strikes import StrikeLedger
from tracker_watch.ledger.targets import TargetStore
from tracker_watch.swarm.announcer import Announcer, Announcers
from tracker_watch.swarm.engine import SwarmEngine
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
        self.ownership: Ownership | None = None
        self._beat_lock = asyncio.Lock()
        self._seen_revision = -1
        self._tasks: list[asyncio.Task[Any]] = []
        self._background: set[asyncio.Task[Any]] = set()

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
        try:
            await self.db.start()
        except BaseException:
            spool.close()
            raise
        self.writer = EvidenceWriter(self.db.pool, s.node.name, signing.load_or_create(s.node.state_dir),
                                     s.evidence.incident_window_s, s.evidence.checkpoint_every,
                                     s.evidence.checkpoint_interval_s)
        self.batcher = Batcher(self.writer.write, spool, s.collector.batch_size, s.collector.flush_interval_s,
                               s.spool.fsync_interval_s, s.database.write_timeout_s, s.spool.near_full_ratio)
        if spool.pending_records:
            _log.info("spool_replay", records=spool.pending_records, spool_bytes=spool.pending_bytes)
        self.batcher.start()
        self.collector = Collector(s.node.name, SOFTWARE, self.batcher.put, s.collector.reobserve_s,
                                   change_gap_s=s.swarm.peer_refresh_s)
        self.engine = engine = SwarmEngine(s, self.collector.handle, on_metadata=self._on_metadata)
        await self.engine.start()
        session = Announcer(s.trackers, self.engine.add_peer, self.engine.listen_port, self.engine.peer_id,
                            None, policy=self.engine.policy, own_ips=lambda: engine.own_ips,
                            local_ips=s.swarm.outgoing_interfaces)
        self.announcer = Announcers(session)
        if self.engine.verifier is not None:
            # the verifier's listener too, from its own address: a peer that dials it is proven on that connection
            probe = [s.verify.probe_interface] if s.verify.probe_interface else []
            self.announcer = Announcers(session, Announcer(
                s.trackers, self.engine.add_peer, self.engine.announce_port, new_peer_id(), None,
                policy=self.engine.policy, own_ips=lambda: engine.own_ips,
                local_ips=[*probe, *s.swarm.outgoing_interfaces]))
        await self.announcer.start()
        self.watchlist = Watchlist(TargetStore(self.db.pool), self.engine, self.collector, self.announcer,
                                   s.daemon.target_poll_s, actor=f"node:{s.node.name}")
        self.ownership = Ownership(self.db.pool, s.node.name, SOFTWARE, s.node.max_targets, s.node.lease_ttl_s,
                                   s.node.heartbeat_s)
        await self._heartbeat()  # take our leases (our own at once after a crash) and resume those targets
        if s.api.enabled:
            from tracker_watch.api.app import ApiServer

            self.api = ApiServer(self.db.pool, s, self.engine, self.watchlist)
            await self.api.start()
        self.strikes = StrikeLedger(self.db.pool, s)
        self.outbox = Outbox(self.db.pool, s.notices)
        if s.metrics.enabled:
            metrics.init_label_sets()
            self._collector = metrics.DaemonCollector(self, s.metrics.per_target_limit)
            REGISTRY.register(self._collector)
            self.metrics_server = metrics.MetricsServer(s.metrics.listen)
            await self.metrics_server.start()
            await metrics.refresh_database_gauges(self.db.pool)
        periodic = {"heartbeat": (s.node.heartbeat_s, self._heartbeat),
                    "new-targets": (s.daemon.target_poll_s, self._new_targets),
                    "forget-idle": (60.0, self._forget_idle), "retention": (3600.0, self._retention),
                    "metrics": (s.metrics.refresh_s, lambda: metrics.refresh_database_gauges(self.db.pool)),
                    "checkpoint": (s.evidence.checkpoint_interval_s, self._checkpoint),
                    "strikes": (s.policy.evaluate_interval_s, self._evaluate_strikes),
                    "outbox": (s.notices.delivery_interval_s, self._deliver_notices)}
        self._tasks.append(asyncio.create_task(self.watchlist.run(), name="watchlist"))
        self._tasks += [asyncio.create_task(_every(every, job), name=name) for name, (every, job) in periodic.items()]
        if (interval := systemd.watchdog_interval()) is not None:
            self._tasks.append(asyncio.create_task(systemd.watchdog_loop(interval), name="watchdog"))
        await warn_placeholders(s, self.db.pool)
        self.started.set()
        systemd.notify(f"READY=1\nSTATUS=watching {len(self.engine.swarms)} swarms")
        _log.info("daemon_started", version=SOFTWARE, targets=len(self.watchlist.rows),
                  swarms=len(self.engine.swarms), seconds=round(time.monotonic() - t0, 2), **self.listening())

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
        if self._background:
            await asyncio.wait(self._background, timeout=max(0.1, (deadline - time.monotonic()) / 3))
        if self.ownership is not None:
            try:  # hand the targets to the other nodes now rather than after the lease TTL
                released = await asyncio.wait_for(self.ownership.release_all(),
                                                  timeout=max(0.1, (deadline - time.monotonic()) / 4))
                _log.info("leases_released", count=released)
            except Exception as exc:
                _log.warning("lease_release_failed", error=(str(exc) or type(exc).__name__)[:300],
                             note="the leases lapse after node.lease_ttl_s")
        unwritten = 0
        if self.batcher is not None:
            unwritten = await self.batcher.stop(timeout=max(0.5, deadline - time.monotonic() - 1.0))
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
        await self.db.stop()
        _log.info("daemon_stopped", unwritten=unwritten,
                  written=self.batcher.written if self.batcher else 0)

    def _on_metadata(self, swarm: Swarm, info: bytes, meta: TorrentMeta) -> None:
        assert self.watchlist is not None
        group = self.watchlist.groups.get(swarm.key)
        if group is None:
            return
        ids = [r.target_id for r in group.refs]
        task = asyncio.create_task(TargetStore(self.db.pool).set_metadata(ids, info, meta))
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _log.warning("background_task_failed", error=str(task.exception())[:300])

    async def _heartbeat(self) -> None:
        assert self.ownership is not None
        assert self.watchlist is not None
        async with self._beat_lock:
            beat = await self.ownership.beat()
            await self._name_new_targets(beat.owned)  # before their swarms log their first line
            await self.watchlist.set_owned(beat.owned)
            log.TARGETS_BY_INFOHASH.clear()
            log.TARGETS_BY_INFOHASH.update({key: [r.target_id for r in group.refs]
                                            for key, group in self.watchlist.groups.items()})

    async def _name_new_targets(self, owned: frozenset[int]) -> None:
        known = {i for ids in log.TARGETS_BY_INFOHASH.values() for i in ids}
        if not (new := owned - known):
            return
        for r in await self.db.pool.fetch("SELECT id, coalesce(infohash_v1, infohash_v2) AS ih FROM targets "
                                          "WHERE id = ANY($1::bigint[])", list(new)):
            log.TARGETS_BY_INFOHASH.setdefault(bytes(r["ih"]).hex(), []).append(r["id"])

    async def _new_targets(self) -> None:
        """Beat early when targets were added or changed, so new ones start within daemon.target_poll_s."""
        revision = await self.db.pool.fetchval("SELECT coalesce(max(revision), 0) FROM targets")
        if revision != self._seen_revision:
            self._seen_revision = revision
            await self._heartbeat()

    async def _forget_idle(self) -> None:
        now = utc_now_ms()
        if self.collector is not None:
            self.collector.evict_idle(now)
        if self.engine is not None:
            for swarm in self.engine.swarms.values():
                if len(swarm.listed) >= swarm.max_peers:
                    swarm.forget_listed()
                if swarm.planner is not None:
                    swarm.planner.prune(now.date())

    async def _checkpoint(self) -> None:
        """Seal new evidence even when no batch makes a checkpoint due (quiet periods)."""
        if self.writer is not None:
            await self.writer.checkpoint()

    async def _evaluate_strikes(self) -> None:
        assert self.strikes is not None
        report = await self.strikes.tick()
        if report.created or report.superseded:
            _log.info("strikes_evaluated", subjects=report.subjects, created=report.created,
                      superseded=report.superseded, out_of_jurisdiction=report.out_of_jurisdiction)
        if report.out_of_jurisdiction:
            _log.info("evidence_out_of_jurisdiction", observations=report.out_of_jurisdiction,
                      jurisdictions=self.settings.policy.jurisdictions,
                      test_country=self.settings.policy.test_country or None,
                      note="kept, but starts no strike; loopback and private addresses have a country only "
                           "through policy.test_country")

    async def _deliver_notices(self) -> None:
        assert self.outbox is not None
        await self.outbox.deliver_due()

    async def _retention(self) -> None:
        cutoff = utc_now_ms() - timedelta(days=self.settings.evidence.retention_days)
        async with self.db.pool.acquire() as conn:
            report = await retention.purge(conn, cutoff, self.settings.evidence.incident_window_s, dry_run=False)
        if report.incidents:
            _log.info("evidence_redacted", incidents=report.incidents, observations=report.observations)


async def warn_placeholders(s: Settings, pool: Any) -> None:
    """Loudly: a notice naming a reserved-domain address (reply or ISP abuse desk) reaches nobody who can answer."""
    from tracker_watch.domain.contacts import is_placeholder

    if is_placeholder(s.notices.complainant_email):
        _log.warning("placeholder_contact", setting="notices.complainant_email", value=s.notices.complainant_email,
                     note="every notice names this reply address; set a real one before notices reach an ISP")
    for r in await pool.fetch("SELECT name, abuse_email FROM isps WHERE abuse_email IS NOT NULL ORDER BY name"):
        if is_placeholder(r["abuse_email"]):
            _log.warning("placeholder_contact", isp=r["name"], value=r["abuse_email"],
                         note="this ISP's notices name this abuse address; `tracker-watch isp set` a real one")


async def _every(seconds: float, job: Callable[[], Awaitable[None]]) -> None:
    """Run `job` every `seconds`; a failure is logged and retried at the next tick, never fatal."""
    while True:
        await asyncio.sleep(seconds)
        try:
            await job()
        except Exception as exc:
            _log.warning("periodic_job_failed", job=getattr(job, "__name__", "?"), error=str(exc)[:300])
