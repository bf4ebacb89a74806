"""/metrics of a running daemon: the names operators rely on, and labels that never carry personal data."""

from __future__ import annotations

import asyncio
import ipaddress
import re
import time

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import SettingsFactory
from tests.helpers import wait_for, wait_for_async
from tracker_watch import metrics
from tracker_watch.daemon import Daemon
from tracker_watch.demo.swarm import LocalSwarm
from tracker_watch.domain.targets import parse_target
from tracker_watch.ledger.targets import TargetStore

REQUIRED = {
    "tracker_watch_build_info", "tracker_watch_targets", "tracker_watch_swarms", "tracker_watch_peers_connected",
    "tracker_watch_observations_total", "tracker_watch_incident_changes_total", "tracker_watch_strikes",
    "tracker_watch_notices", "tracker_watch_ingest_batch_rows", "tracker_watch_ingest_batch_duration_seconds",
    "tracker_watch_ingest_pending", "tracker_watch_spool_bytes", "tracker_watch_database_errors_total",
    "tracker_watch_database_up", "tracker_watch_api_requests_total", "tracker_watch_dht_nodes",
    "tracker_watch_payload_downloaded_bytes_total", "tracker_watch_payload_uploaded_bytes_total",
    "tracker_watch_alerts_dropped_total", "tracker_watch_target_peers_connected", "tracker_watch_spool_limit_bytes",
    "tracker_watch_leases", "tracker_watch_lease_changes_total", "tracker_watch_observations_dropped_total",
    "tracker_watch_spool_corrupt_records_total", "tracker_watch_limit_hits_total", "tracker_watch_node_max_targets",
    "tracker_watch_event_loop_lag_seconds",
}


async def scrape(port: int) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as r:
        text = await r.text()
    out: dict[str, list[tuple[str, dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.name, sample.labels, sample.value))
    return out


async def test_metrics_of_a_running_daemon(make_settings: SettingsFactory, local_swarm: LocalSwarm) -> None:
    daemon = Daemon(make_settings())
    await daemon.start()
    try:
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{daemon.api.port}/healthz"):
            pass
        port = daemon.metrics_server.port  # type: ignore[union-attr]

        def verified(samples: dict[str, list[tuple[str, dict[str, str], float]]]) -> float:
            return sum(v for _, labels, v in samples.get("tracker_watch_observations_total", [])
                       if labels.get("grade") == "verified")

        before = verified(await scrape(port))  # counters are per process: earlier tests' daemons counted too
        await TargetStore(daemon.db.pool).register(parse_target(local_swarm.content.magnet([local_swarm.tracker.url])),
                                                   "Studio", "Film", actor="test")

        async def observed() -> bool:
            samples = await scrape(port)
            return verified(samples) > before and "tracker_watch_target_peers_connected" in samples

        await wait_for_async(observed, timeout=60)
        samples = await scrape(port)
    finally:
        await daemon.stop()
    names = {re.sub(r"_(bucket|count|sum|created)$", "", n) for n in samples}
    assert names >= REQUIRED, REQUIRED - names
    assert samples["tracker_watch_payload_uploaded_bytes_total"][0][2] == 0
    assert samples["tracker_watch_swarms"][0][2] == 1
    assert samples["tracker_watch_leases"][0][2] == 1  # the one target, leased to this node
    assert samples["tracker_watch_build_info"][0][1]["node"] == "demo"
    hexes = re.compile(r"^[0-9a-f]{40}$|^[0-9a-f]{64}$")
    for series in samples.values():
        for name, labels, _ in series:
            for key, value in labels.items():
                if name == "tracker_watch_build_info" and key in ("version", "libtorrent"):
                    continue  # "2.1.1.0" is a version, though it parses as an address
                assert not hexes.match(value), value  # no infohash
                assert "Studio" not in value  # no tenant name
                try:
                    ipaddress.ip_address(value)
                except ValueError:
                    continue
                raise AssertionError(f"an IP address in a label: {value}")


def lag_samples(above: float) -> tuple[float, float]:
    """(samples so far, samples above `above` seconds) of the event-loop lag histogram."""
    buckets = {s.labels["le"]: s.value for fam in metrics.EVENT_LOOP_LAG.collect() for s in fam.samples
               if s.name.endswith("_bucket")}
    return buckets["+Inf"], buckets["+Inf"] - buckets[str(above)]


async def test_event_loop_lag_records_a_callback_that_holds_the_loop() -> None:
    """A callback that holds the loop shows up as lag at least that long, less one sampling interval (a
    lower bound, so a busy machine can only make it larger)."""
    task = asyncio.create_task(metrics.watch_loop_lag())
    try:
        total, _ = lag_samples(0.1)
        await wait_for(lambda: lag_samples(0.1)[0] >= total + 2, timeout=30, step=0.01)  # sampling runs
        _, held_before = lag_samples(0.1)
        time.sleep(0.1 + 2 * metrics.LOOP_LAG_INTERVAL_S + 0.05)  # noqa: ASYNC251 — holding the loop is the point
        await wait_for(lambda: lag_samples(0.1)[0] >= total + 4, timeout=30, step=0.01)
        assert lag_samples(0.1)[1] >= held_before + 1
    finally:
        task.cancel()
