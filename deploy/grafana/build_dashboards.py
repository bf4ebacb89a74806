"""Writes the Grafana dashboards (dashboards/*.json) from the panel lists below.

    python3 deploy/grafana/build_dashboards.py      (tests fail if the JSON files differ from this output)

Every panel has a unit, every rate() and increase() runs over $__rate_interval, and the datasource is
a template variable, so the dashboards can be provisioned into any Grafana without editing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DS = {"type": "prometheus", "uid": "${datasource}"}
RI = "$__rate_interval"

# (title, kind, unit, [(expr, legend)], width, extra field config)
Panel = tuple[str, str, str, list[tuple[str, str]], int, dict[str, Any]]
ZERO_IS_GOOD = {"thresholds": {"mode": "absolute", "steps": [{"color": "green", "value": None},
                                                              {"color": "red", "value": 1}]}}
OVERVIEW: list[Panel] = [
    ("Swarms joined", "stat", "short", [("sum(tracker_watch_swarms)", "swarms")], 4, {}),
    ("Peers connected", "stat", "short", [("sum(tracker_watch_peers_connected)", "peers")], 4, {}),
    ("Payload uploaded (must stay 0)", "stat", "bytes",
     [("sum(tracker_watch_payload_uploaded_bytes_total)", "uploaded")], 4, ZERO_IS_GOOD),
    ("Database reachable", "stat", "bool_yes_no", [("min(tracker_watch_database_up)", "database")], 4, {}),
    ("DHT nodes", "stat", "short", [("sum(tracker_watch_dht_nodes)", "nodes")], 4, {}),
    ("Alerts dropped", "stat", "short", [(f"sum(increase(tracker_watch_alerts_dropped_total[{RI}]))", "dropped")], 4,
     ZERO_IS_GOOD),
    ("Observations by grade", "timeseries", "ops",
     [(f"sum by (grade) (rate(tracker_watch_observations_total[{RI}]))", "{{grade}}")], 12, {}),
    ("Observations by source", "timeseries", "ops",
     [(f"sum by (source) (rate(tracker_watch_observations_total[{RI}]))", "{{source}}")], 12, {}),
    ("Targets by state", "timeseries", "short", [("sum by (state) (tracker_watch_targets)", "{{state}}")], 8, {}),
    ("Active strikes by level", "timeseries", "short",
     [('sum by (level) (tracker_watch_strikes{status="active"})', "strike {{level}}")], 8, {}),
    ("Notices by delivery state", "timeseries", "short", [("sum by (state) (tracker_watch_notices)", "{{state}}")],
     8, {}),
    ("Ingestion: rows per batch (median)", "timeseries", "short",
     [(f"histogram_quantile(0.5, sum by (le) (rate(tracker_watch_ingest_batch_rows_bucket[{RI}])))", "median")],
     8, {}),
    ("Ingestion: batch write time (p95)", "timeseries", "s",
     [(f"histogram_quantile(0.95, sum by (le) (rate(tracker_watch_ingest_batch_duration_seconds_bucket[{RI}])))",
       "p95")], 8, {}),
    ("Spool: observations waiting for the database", "timeseries", "short",
     [("sum by (instance) (tracker_watch_ingest_pending)", "{{instance}}")], 8, {}),
    ("Spool fill", "timeseries", "percentunit",
     [("max by (instance) (tracker_watch_spool_bytes / tracker_watch_spool_limit_bytes)", "{{instance}}")], 8, {}),
    ("Observations dropped (spool full)", "stat", "short",
     [(f"sum(increase(tracker_watch_observations_dropped_total[{RI}]))", "dropped")], 4, ZERO_IS_GOOD),
    ("Target leases by node", "timeseries", "short",
     [("sum by (instance) (tracker_watch_leases)", "{{instance}}"),
      ("max(tracker_watch_node_max_targets)", "max per node")], 8, {}),
    ("Payload downloaded for verification", "timeseries", "Bps",
     [(f"sum(rate(tracker_watch_payload_downloaded_bytes_total[{RI}]))", "downloaded")], 8, {}),
    ("Payload deleted after verification", "timeseries", "ops",
     [(f"sum(rate(tracker_watch_payload_deletions_total[{RI}]))", "torrents emptied")], 8, {}),
    ("Strikes issued", "timeseries", "ops",
     [(f"sum by (level) (rate(tracker_watch_strikes_issued_total[{RI}]))", "strike {{level}}")], 8, {}),
    ("Errors", "timeseries", "ops",
     [(f"sum by (operation) (rate(tracker_watch_database_errors_total[{RI}]))", "db {{operation}}"),
      (f"sum by (final) (rate(tracker_watch_notice_delivery_failures_total[{RI}]))", "notice delivery final={{final}}"),
      (f'sum(rate(tracker_watch_api_requests_total{{status=~"5.."}}[{RI}])) or vector(0)', "API 5xx")], 12, {}),
    ("API requests", "timeseries", "reqps",
     [(f"sum by (route, status) (rate(tracker_watch_api_requests_total[{RI}]))", "{{route}} {{status}}")], 12, {}),
    ("Evidence outside the jurisdictions", "timeseries", "ops",
     [(f"sum(rate(tracker_watch_evidence_out_of_jurisdiction_total[{RI}]))", "observations")], 12, {}),
    ("Limits reached", "timeseries", "ops",
     [(f"sum by (limit) (rate(tracker_watch_limit_hits_total[{RI}]))", "{{limit}}")], 12, {}),
]
TARGET: list[Panel] = [
    ("Peers connected", "timeseries", "short",
     [('sum(tracker_watch_target_peers_connected{target_id=~"$target"})', "connected")], 12, {}),
    ("Peer addresses known", "timeseries", "short",
     [('sum(tracker_watch_target_peers_known{target_id=~"$target"})', "known")], 12, {}),
]


def panel(i: int, p: Panel, x: int, y: int) -> dict[str, Any]:
    title, kind, unit, targets, width, extra = p
    return {
        "id": i + 1, "type": kind, "title": title, "datasource": DS,
        "gridPos": {"h": 4 if kind == "stat" else 8, "w": width, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit, **extra}, "overrides": []},
        "options": {"reduceOptions": {"calcs": ["lastNotNull"]}} if kind == "stat" else {"legend": {"showLegend": True}},
        "targets": [{"refId": chr(65 + j), "datasource": DS, "expr": expr, "legendFormat": legend}
                    for j, (expr, legend) in enumerate(targets)],
    }


def layout(panels: list[Panel]) -> list[dict[str, Any]]:
    out, x, y, row_h = [], 0, 0, 0
    for i, p in enumerate(panels):
        if x + p[4] > 24:
            x, y, row_h = 0, y + row_h, 0
        out.append(panel(i, p, x, y))
        x += p[4]
        row_h = max(row_h, out[-1]["gridPos"]["h"])
    return out


def dashboard(uid: str, title: str, panels: list[Panel], extra_vars: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "uid": uid, "title": title, "tags": ["tracker-watch"], "schemaVersion": 39, "version": 1, "editable": True,
        "time": {"from": "now-1h", "to": "now"}, "refresh": "30s", "timezone": "utc",
        "templating": {"list": [{"name": "datasource", "label": "Prometheus", "type": "datasource",
                                 "query": "prometheus", "current": {}, "hide": 0}, *extra_vars]},
        "panels": layout(panels),
    }


DASHBOARDS = {
    "overview.json": dashboard("tracker-watch-overview", "tracker-watch — overview", OVERVIEW, []),
    "target.json": dashboard("tracker-watch-target", "tracker-watch — target", TARGET, [{
        "name": "target", "label": "Target id", "type": "query", "datasource": DS, "refresh": 2,
        "query": {"query": "label_values(tracker_watch_target_peers_connected, target_id)", "refId": "target"},
        "definition": "label_values(tracker_watch_target_peers_connected, target_id)", "includeAll": True,
        "multi": True, "current": {}, "sort": 3}]),
}


def render() -> dict[str, str]:
    return {name: json.dumps(doc, indent=2) + "\n" for name, doc in DASHBOARDS.items()}


if __name__ == "__main__":
    for name, text in render().items():
        (HERE / "dashboards" / name).write_text(text)
