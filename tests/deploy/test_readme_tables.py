"""README's metric and alert tables against the code and rules.yml, and the fleet-safety of the dashboards
and rules: database-wide figures are never summed across nodes, `$node` and a default datasource exist."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace as NS
from typing import Any

import yaml
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.metrics import MetricWrapperBase

from tracker_watch import metrics

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DATABASE_WIDE = ("tracker_watch_targets", "tracker_watch_strikes", "tracker_watch_notices",
                 "tracker_watch_last_observation_timestamp_seconds")


def readme_table(header: str) -> list[list[str]]:
    lines = (ROOT / "README.md").read_text().splitlines()
    start = lines.index(header)
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def documented_metrics() -> dict[str, tuple[str, set[str]]]:
    out: dict[str, tuple[str, set[str]]] = {}
    for names, types, _ in readme_table("| metric | type | meaning |"):
        found = re.findall(r"`([a-z_]+)(?:\{([a-z_,]*)\})?`", names)
        kinds = [t.strip() for t in types.split(",")]
        assert len(kinds) in (1, len(found)), names
        for i, (name, labels) in enumerate(found):
            out[name] = (kinds[0] if len(kinds) == 1 else kinds[i], set(filter(None, labels.split(","))))
    return out


def _exposed(name: str, kind: str) -> str:
    return name + {"counter": "_total", "info": "_info"}.get(kind, "")


def exported_metrics() -> dict[str, tuple[str, set[str]]]:
    out: dict[str, tuple[str, set[str]]] = {}
    for obj in vars(metrics).values():
        if isinstance(obj, MetricWrapperBase):
            out[_exposed(obj._name, str(obj._type))] = (str(obj._type), set(obj._labelnames))
    daemon = NS(version="v", libtorrent_version="l", engine=None, batcher=None,
                settings=NS(node=NS(name="n", max_targets=1), metrics=NS(quiet_alert_s=1.0), spool=NS(max_bytes=1)),
                watchlist=NS(groups={"k": NS(refs=[NS(target_id=1)])}))
    for family in metrics.DaemonCollector(daemon, 10).collect():
        labels = {k for sample in family.samples for k in sample.labels}
        out[_exposed(family.name, family.type)] = (family.type, labels - {"version", "libtorrent", "node"}
                                                   if family.type == "info" else labels)
    out["tracker_watch_build_info"] = ("info", {"version", "libtorrent", "node"})
    return out


def test_metric_table_is_what_the_code_exports() -> None:
    documented, exported = documented_metrics(), exported_metrics()
    assert set(documented) == set(exported), (f"undocumented: {sorted(set(exported) - set(documented))}; "
                                              f"documented but absent: {sorted(set(documented) - set(exported))}")
    assert {k: v for k, v in documented.items() if exported[k] != v} == {}


def test_no_created_series() -> None:
    metrics.OBSERVATIONS.labels(grade="listed", source="tracker")
    assert b"_created" not in generate_latest(REGISTRY)


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load((DEPLOY / "prometheus" / "rules.yml").read_text())
    return [r for group in doc["groups"] for r in group["rules"]]


def test_alert_table_is_rules_yml() -> None:
    table = {re.sub(r"`", "", name): (duration, severity)
             for name, _, duration, severity in readme_table("| alert | fires when | for | severity |")}
    in_rules = {r["alert"]: (r.get("for", "—"), r["labels"]["severity"]) for r in rules()}
    assert table == in_rules


def _database_wide_summed(expr: str) -> list[str]:
    """Uses of a database-wide gauge not taken with max/min across nodes: a sum shows N times the truth, a
    per-instance use raises one alert per node."""
    bad = []
    for name in DATABASE_WIDE:
        uses = len(re.findall(rf"\b{name}\b(?![_a-z])", expr))
        taken = len(re.findall(rf"\b(?:max|min)(?:\s+by\s*\([^)]*\))?\s*\(\s*{name}\b(?![_a-z])", expr))
        if uses != taken:
            bad.append(name)
    return bad


def test_database_wide_gauges_are_never_summed() -> None:
    exprs = [r["expr"] for r in rules()]
    for path in (DEPLOY / "grafana" / "dashboards").glob("*.json"):
        doc = json.loads(path.read_text())
        exprs += [t["expr"] for panel in doc["panels"] for t in panel["targets"]]
    assert [e for e in exprs if _database_wide_summed(e)] == []
    assert _database_wide_summed("sum by (state) (tracker_watch_targets)")
    assert _database_wide_summed('tracker_watch_targets{state="active"} > 0')
    assert not _database_wide_summed('max by (state) (tracker_watch_targets{state="x"})')
    assert not _database_wide_summed("sum(tracker_watch_targets_x)")


def test_dashboards_have_node_and_a_default_datasource() -> None:
    provisioned = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "datasources" / "tracker-watch.yaml")
                                 .read_text())["datasources"][0]
    for path in (DEPLOY / "grafana" / "dashboards").glob("*.json"):
        doc = json.loads(path.read_text())
        variables = {v["name"]: v for v in doc["templating"]["list"]}
        assert variables["datasource"]["current"]["value"] == provisioned["uid"]
        assert "tracker_watch_build_info, node" in variables["node"]["definition"]
        for panel in doc["panels"]:
            for t in panel["targets"]:
                expr = t["expr"]
                assert '$node' in expr or any(name in expr for name in DATABASE_WIDE), (panel["title"], expr)
