"""All Prometheus metrics, in one place, named by Prometheus conventions (tracker_watch_ prefix, base units,
_total counters). Labels never carry an IP, an infohash or a tenant's name: those live in PostgreSQL, and
would make the series count grow without bound. Per-target series use the numeric target id, and only for
the `metrics.per_target_limit` busiest targets.

Counters are incremented where things happen; gauges describing the daemon's state are read at scrape
time by DaemonCollector (engine, batcher) or refreshed from PostgreSQL every few seconds (DatabaseGauges).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

# No `*_created` series: they double the series count and nothing here reads them. Must run before the
# metrics below are made.
disable_created_metrics()  # type: ignore[no-untyped-call]

OBSERVATIONS = Counter("tracker_watch_observations_total", "Observation rows written, by grade and source.",
                       ["grade", "source"])
INCIDENT_CHANGES = Counter("tracker_watch_incident_changes_total", "Incident rows created or extended.")
INGEST_BATCH_ROWS = Histogram("tracker_watch_ingest_batch_rows", "Observations per database batch.",
                              buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000))
INGEST_BATCH_SECONDS = Histogram("tracker_watch_ingest_batch_duration_seconds", "Time to write one batch.",
                                 buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
DATABASE_ERRORS = Counter("tracker_watch_database_errors_total", "Failed database operations, by operation.",
                          ["operation"])
EVIDENCE_OUT_OF_JURISDICTION = Counter(
    "tracker_watch_evidence_out_of_jurisdiction_total",
    "Observations at or above the minimum grade from addresses outside the configured jurisdictions "
    "(kept, but starting no strike).")
STRIKES_ISSUED = Counter("tracker_watch_strikes_issued_total", "Strikes issued.", ["level"])
STRIKES_SUPERSEDED = Counter("tracker_watch_strikes_superseded_total",
                             "Strikes withdrawn because re-evaluation no longer yields them (after a void).")
NOTICES_DELIVERED = Counter("tracker_watch_notices_delivered_total", "Notices delivered to ISPs.")
NOTICE_DELIVERY_FAILURES = Counter("tracker_watch_notice_delivery_failures_total",
                                   "Failed notice delivery attempts.", ["final"])
API_REQUESTS = Counter("tracker_watch_api_requests_total", "API requests, by route template, method and status.",
                       ["route", "method", "status"])
API_SECONDS = Histogram("tracker_watch_api_request_duration_seconds", "API request duration, by route template.",
                        ["route"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10))
PAYLOAD_DELETED = Counter("tracker_watch_payload_deletions_total",
                          "Torrents re-added empty after their verified pieces were deleted.")
ALERT_HANDLER_ERRORS = Counter("tracker_watch_alert_handler_errors_total",
                               "libtorrent alerts whose handler failed (the rest of the batch is still handled).")
LIMIT_HITS = Counter("tracker_watch_limit_hits_total", "Times a configured bound was reached, by limit.", ["limit"])
PEERS_REFUSED = Counter("tracker_watch_peers_refused_total",
                        "Peer addresses neither dialled nor recorded: the address policy forbids them "
                        "(private, loopback, reserved …, see swarm.allowed_networks), by who named them.",
                        ["source"])
PEERS_BANNED = Counter("tracker_watch_peers_banned_total",
                       "Peers libtorrent banned or dropped for bad data, by how we learned it: 'alert' "
                       "(peer_ban_alert) or 'disconnect' (reason 'peer banned' — smart-ban's silent ban — or "
                       "'too many corrupt pieces'). Not evidence by itself.", ["how"])
ANNOUNCES = Counter("tracker_watch_announces_total",
                    "Our tracker announces, by event (started, regular, stopped) and result: ok (a reply), failed "
                    "(an error or no reply in time), dropped (a stopped announce the node's stop had no room for).",
                    ["event", "result"])
TRACKERS_REFUSED = Counter("tracker_watch_trackers_refused_total",
                           "Tracker URLs not announced to: malformed, too many, or a host the address policy "
                           "forbids.")

OBSERVATIONS_DROPPED = Counter("tracker_watch_observations_dropped_total",
                               "Observations lost because the spool was full or failing, by reason.", ["reason"])
SPOOL_CORRUPT = Counter("tracker_watch_spool_corrupt_records_total",
                        "Damaged spool records reported and skipped on replay.")
WRITER_PROCESS_EXITS = Counter("tracker_watch_writer_process_exits_total",
                               "Evidence writer processes that ended unasked (collector.writer = process); "
                               "their batches are written again by the next one.")
LEASES = Gauge("tracker_watch_leases", "Swarm leases this node holds.")
LEASE_CHANGES = Counter("tracker_watch_lease_changes_total",
                        "Swarm leases taken, released, lost, or fenced (no heartbeat within the lease).", ["change"])
DATABASE_UP = Gauge("tracker_watch_database_up", "1 if the last database probe succeeded.")
LOCAL_COPY_TARGETS = Gauge("tracker_watch_local_copy_targets",
                           "Targets run from the node's local copy: it started while the database was away "
                           "(0 once the database answered, or when the copy was missing or damaged).")
# Database-wide: refreshed from PostgreSQL, so every node exports the same figures. Aggregate them across
# nodes with max(), never sum() (README, "Metrics"; the dashboards and alert rules do).
TARGETS = Gauge("tracker_watch_targets", "Registered targets by state.", ["state"])
STRIKES = Gauge("tracker_watch_strikes", "Strikes by level and status.", ["level", "status"])
NOTICES = Gauge("tracker_watch_notices", "Notices by delivery state.", ["state"])
EVENT_LOOP_LAG = Histogram(
    "tracker_watch_event_loop_lag_seconds",
    "How late a timer set for every LOOP_LAG_INTERVAL_S fired: the time the event loop was held by other work "
    "(alerts, the API, the verifier, the watchlist) before it could run the next callback.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
LOOP_LAG_INTERVAL_S = 0.05
LAST_OBSERVATION = Gauge("tracker_watch_last_observation_timestamp_seconds",
                         "Unix time of the newest observation in the ledger.")


class DaemonCollector(Collector):
    """The daemon's own state, read at scrape time: no polling loop, no stale values."""

    def __init__(self, daemon: Any, per_target_limit: int) -> None:
        self.daemon = daemon
        self.per_target_limit = per_target_limit

    def collect(self) -> Iterator[Any]:
        d = self.daemon
        info = InfoMetricFamily("tracker_watch_build", "Version of this node's software.")
        info.add_metric([], {"version": d.version, "libtorrent": d.libtorrent_version, "node": d.settings.node.name})
        yield info
        engine, batcher = d.engine, d.batcher
        counters = engine.counters if engine is not None else {}
        swarms = list(engine.swarms.values()) if engine is not None else []
        yield _gauge("tracker_watch_swarms", "Swarms joined (one libtorrent torrent each).", len(swarms))
        yield _gauge("tracker_watch_peers_connected", "Peer connections of the session.",
                     counters.get("peer.num_peers_connected", 0))
        yield _gauge("tracker_watch_dht_nodes", "Nodes in the DHT routing table.", counters.get("dht.dht_nodes", 0))
        yield _counter("tracker_watch_payload_downloaded_bytes", "Payload bytes downloaded (for verification).",
                       counters.get("net.recv_payload_bytes", 0))
        yield _counter("tracker_watch_payload_uploaded_bytes", "Payload bytes uploaded. Must stay zero.",
                       max(counters.get("net.sent_payload_bytes", 0),
                           engine.upload_tripwire if engine is not None else 0))
        yield _counter("tracker_watch_alerts_dropped", "libtorrent alert queue overflows.",
                       engine.alerts_dropped if engine is not None else 0)
        yield _gauge("tracker_watch_ingest_pending", "Observations waiting to be written.",
                     batcher.pending if batcher is not None else 0)
        yield _gauge("tracker_watch_quiet_alert_threshold_seconds", "metrics.quiet_alert_s: no observations for "
                     "this long while targets are active raises TrackerWatchNoObservations.",
                     d.settings.metrics.quiet_alert_s)
        yield _gauge("tracker_watch_spool_bytes", "Bytes of observations in the spool not yet in the database.",
                     batcher.spool.pending_bytes if batcher is not None else 0)
        yield _gauge("tracker_watch_spool_limit_bytes", "spool.max_bytes.", d.settings.spool.max_bytes)
        yield _gauge("tracker_watch_node_max_targets", "node.max_targets: the most targets this node takes.",
                     d.settings.node.max_targets)
        yield from self._per_target(swarms, d)

    def _per_target(self, swarms: list[Any], d: Any) -> Iterator[Any]:
        peers = GaugeMetricFamily("tracker_watch_target_peers_connected", "Connected peers of a target's swarm "
                                  "(busiest targets only).", labels=["target_id"])
        known = GaugeMetricFamily("tracker_watch_target_peers_known", "Peer addresses known for a target's swarm "
                                  "(busiest targets only).", labels=["target_id"])
        # Series follow the watchlist, not the engine's swarm table, so a target keeps its series while its
        # swarm is recycled between verification generations.
        groups = d.watchlist.groups if d.watchlist is not None else {}
        by_key = {s.key: s for s in swarms}
        ranked = sorted(groups.items(), key=lambda kv: len(getattr(by_key.get(kv[0]), "connected", ())),
                        reverse=True)
        emitted = 0
        for key, group in ranked:
            swarm = by_key.get(key)
            for ref in group.refs:
                if emitted >= self.per_target_limit:
                    break
                emitted += 1
                peers.add_metric([str(ref.target_id)], len(swarm.connected) if swarm is not None else 0)
                known.add_metric([str(ref.target_id)], len(swarm.listed) if swarm is not None else 0)
        yield peers
        yield known


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def init_label_sets() -> None:
    """Labelled counters export nothing until a label set is used; dashboards and alerts want zeros."""
    for operation in ("write_observations", "probe"):
        DATABASE_ERRORS.labels(operation=operation)
    for final in ("true", "false"):
        NOTICE_DELIVERY_FAILURES.labels(final=final)
    for level in ("1", "2", "3"):
        STRIKES_ISSUED.labels(level=level)
    for limit in ("spool.max_bytes", "node.max_targets", "swarm.max_peers_per_swarm", "swarm.connections_limit"):
        LIMIT_HITS.labels(limit=limit)
    for reason in ("spool_full", "spool_error"):
        OBSERVATIONS_DROPPED.labels(reason=reason)
    for source in ("tracker", "dht", "pex", "incoming"):
        PEERS_REFUSED.labels(source=source)
    for event in ("started", "regular", "stopped"):
        for result in ("ok", "failed"):
            ANNOUNCES.labels(event=event, result=result)
    ANNOUNCES.labels(event="stopped", result="dropped")
    for how in ("alert", "disconnect"):
        PEERS_BANNED.labels(how=how)
    for change in ("taken", "released", "lost", "fenced"):
        LEASE_CHANGES.labels(change=change)


async def watch_loop_lag(interval: float = LOOP_LAG_INTERVAL_S) -> None:
    """Sample the event loop's lag for ever: a sleep of `interval` that ends late ended late because a
    callback held the loop, so each sample is a lower bound of the longest hold in that interval. Twenty
    timer wake-ups a second cost well under 0.1 % of a core."""
    loop = asyncio.get_running_loop()
    while True:
        start = loop.time()
        await asyncio.sleep(interval)
        EVENT_LOOP_LAG.observe(max(0.0, loop.time() - start - interval))


async def refresh_database_gauges(pool: Any) -> None:
    """Counts every node agrees on; cheap queries over small tables (targets, strikes, notices)."""
    try:
        targets = await pool.fetch("SELECT status, count(*) AS n FROM targets GROUP BY status")
        strikes = await pool.fetch("SELECT level, status, count(*) AS n FROM strikes GROUP BY level, status")
        notices = await pool.fetch("SELECT state, count(*) AS n FROM notices GROUP BY state")
        newest = await pool.fetchval("SELECT max(observed_at) FROM observations")
    except Exception:
        DATABASE_UP.set(0)
        DATABASE_ERRORS.labels(operation="probe").inc()
        raise
    DATABASE_UP.set(1)
    states = {(state,): 0 for state in ("active", "paused", "deleted", "error")}
    _set(TARGETS, states | {(r["status"],): r["n"] for r in targets})
    _set(STRIKES, {(str(level), status): 0 for level in (1, 2, 3) for status in ("active", "voided", "superseded")}
         | {(str(r["level"]), r["status"]): r["n"] for r in strikes})
    _set(NOTICES, {(state,): 0 for state in ("pending", "delivered", "failed", "held", "cancelled")}
         | {(r["state"],): r["n"] for r in notices})
    if newest is not None:
        LAST_OBSERVATION.set(newest.timestamp())


def _set(gauge: Gauge, values: dict[tuple[str, ...], int]) -> None:
    for labels, value in values.items():
        gauge.labels(*labels).set(value)


class MetricsServer:
    """Serves /metrics (Prometheus text format) on its own address, apart from the API."""

    def __init__(self, listen: str) -> None:
        self.listen = listen
        self.port = 0
        self._runner: Any = None

    async def start(self) -> None:
        from aiohttp import web
        from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

        from tracker_watch.config import parse_endpoint

        async def scrape(request: web.Request) -> web.Response:
            return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})

        app = web.Application()
        app.router.add_get("/metrics", scrape)
        host, port = parse_endpoint("metrics.listen", self.listen)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
