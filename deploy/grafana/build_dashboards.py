"""Writes the Grafana dashboards (dashboards/*.json) from the panel lists below.

    python3 deploy/grafana/build_dashboards.py      (tests fail if the JSON files differ from this output)

Every panel has a unit, every rate() and increase() runs over $__rate_interval, and the datasource is
a template variable (defaulting to the provisioned one), so the dashboards can be provisioned into any
Grafana without editing. `$node` picks nodes (by their node.name, from tracker_watch_build_info) for the
per-node figures; database-wide figures (targets, strikes, notices), which every node exports alike, are
taken with max() over the fleet, never summed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DS = {"type": "prometheus", "uid": "${datasource}"}
RI = "$__rate_interval"
# keeps a per-node series only for the nodes picked in $node (series carry `instance`; node names come from
# the build info)
N = 'and on(instance) tracker_watch_build_info{node=~"$node"}'
PROVISIONED = {"text": "Prometheus (tracker-watch)", "value": "tracker-watch-prometheus"}

# (title, kind, unit, [(expr, legend)], width, extra field config)
Panel = tuple[str, str, str, list[tuple[str, str]], int, dict[str, Any]]
ZERO_IS_GOOD = {"thresholds": {"mode": "absolute", "steps": [{"color": "green", "value": None},
                                                              {"color": "red", "value": 1}]}}
OVERVIEW: list[Panel] = [
    ("Swarms joined", "stat", "short", [(f"sum(tracker_watch_swarms {N})", "swarms")], 4, {}),
    ("Peers connected", "stat", "short", [(f"sum(tracker_watch_peers_connected {N})", "peers")], 4, {}),
    ("Payload uploaded (must stay 0)", "stat", "bytes",
     [(f"sum(tracker_watch_payload_uploaded_bytes_total {N})", "uploaded")], 4, ZERO_IS_GOOD),
    ("Database reachable", "stat", "bool_yes_no", [(f"min(tracker_watch_database_up {N})", "database")], 4, {}),
    ("DHT nodes", "stat", "short", [(f"sum(tracker_watch_dht_nodes {N})", "nodes")], 4, {}),
    ("Alerts dropped", "stat", "short",
     [(f"sum(increase(tracker_watch_alerts_dropped_total[{RI}]) {N})", "dropped")], 4, ZERO_IS_GOOD),
    ("Observations by grade", "timeseries", "ops",
     [(f"sum by (grade) (rate(tracker_watch_observations_total[{RI}]) {N})", "{{grade}}")], 12, {}),
    ("Observations by source", "timeseries", "ops",
     [(f"sum by (source) (rate(tracker_watch_observations_total[{RI}]) {N})", "{{source}}")], 12, {}),
    ("Targets by state (whole database)", "timeseries", "short",
     [("max by (state) (tracker_watch_targets)", "{{state}}")], 8, {}),
    ("Active strikes by level (whole database)", "timeseries", "short",
     [('max by (level) (tracker_watch_strikes{status="active"})', "strike {{level}}")], 8, {}),
    ("Notices by delivery state (whole database)", "timeseries", "short",
     [("max by (state) (tracker_watch_notices)", "{{state}}")], 8, {}),
    ("Ingestion: rows per batch (median)", "timeseries", "short",
     [(f"histogram_quantile(0.5, sum by (le) (rate(tracker_watch_ingest_batch_rows_bucket[{RI}]) {N}))", "median")],
     8, {}),
    ("Ingestion: batch write time (p95)", "timeseries", "s",
     [(f"histogram_quantile(0.95, sum by (le) (rate(tracker_watch_ingest_batch_duration_seconds_bucket[{RI}]) {N}))",
       "p95")], 8, {}),
    ("Spool: observations waiting for the database", "timeseries", "short",
     [(f"sum by (instance) (tracker_watch_ingest_pending {N})", "{{instance}}")], 8, {}),
    ("Spool fill", "timeseries", "percentunit",
     [(f"max by (instance) (tracker_watch_spool_bytes / tracker_watch_spool_limit_bytes {N})", "{{instance}}")], 8, {}),
    ("Observations dropped (spool full)", "stat", "short",
     [(f"sum(increase(tracker_watch_observations_dropped_total[{RI}]) {N})", "dropped")], 4, ZERO_IS_GOOD),
    ("Target leases by node", "timeseries", "short",
     [(f"sum by (instance) (tracker_watch_leases {N})", "{{instance}}"),
      (f"max(tracker_watch_node_max_targets {N})", "max per node")], 8, {}),
    ("Payload downloaded for verification", "timeseries", "Bps",
     [(f"sum(rate(tracker_watch_payload_downloaded_bytes_total[{RI}]) {N})", "downloaded")], 8, {}),
    ("Payload deleted after verification", "timeseries", "ops",
     [(f"sum(rate(tracker_watch_payload_deletions_total[{RI}]) {N})", "torrents emptied")], 8, {}),
    ("Strikes issued", "timeseries", "ops",
     [(f"sum by (level) (rate(tracker_watch_strikes_issued_total[{RI}]) {N})", "strike {{level}}")], 8, {}),
    ("Errors", "timeseries", "ops",
     [(f"sum by (operation) (rate(tracker_watch_database_errors_total[{RI}]) {N})", "db {{operation}}"),
      (f"sum by (final) (rate(tracker_watch_notice_delivery_failures_total[{RI}]) {N})",
       "notice delivery final={{final}}"),
      (f'sum(rate(tracker_watch_api_requests_total{{status=~"5.."}}[{RI}]) {N}) or vector(0)', "API 5xx")], 12, {}),
    ("API requests", "timeseries", "reqps",
     [(f"sum by (route, status) (rate(tracker_watch_api_requests_total[{RI}]) {N})", "{{route}} {{status}}")], 12, {}),
    ("Evidence outside the jurisdictions", "timeseries", "ops",
     [(f"sum(rate(tracker_watch_evidence_out_of_jurisdiction_total[{RI}]) {N})", "observations")], 12, {}),
    ("Limits reached", "timeseries", "ops",
     [(f"sum by (limit) (rate(tracker_watch_limit_hits_total[{RI}]) {N})", "{{limit}}")], 12, {}),
    ("Tracker announces", "timeseries", "ops",
     [(f"sum by (event, result) (rate(tracker_watch_announces_total[{RI}]) {N})", "{{event}} {{result}}")], 12, {}),
]
TARGET: list[Panel] = [
    ("Peers connected", "timeseries", "short",
     [(f'sum(tracker_watch_target_peers_connected{{target_id=~"$target"}} {N})', "connected")], 12, {}),
    ("Peer addresses known", "timeseries", "short",
     [(f'sum(tracker_watch_target_peers_known{{target_id=~"$target"}} {N})', "known")], 12, {}),
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
                                 "query": "prometheus", "current": PROVISIONED, "hide": 0}, NODE_VAR, *extra_vars]},
        "panels": layout(panels),
    }


NODE_VAR = {"name": "node", "label": "Node", "type": "query", "datasource": DS, "refresh": 2,
            "query": {"query": "label_values(tracker_watch_build_info, node)", "refId": "node"},
            "definition": "label_values(tracker_watch_build_info, node)", "includeAll": True, "multi": True,
            "allValue": ".*", "current": {"text": "All", "value": "$__all"}, "sort": 1}

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
