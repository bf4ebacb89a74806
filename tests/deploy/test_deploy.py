"""The deployment files: Prometheus config and alert rules (promtool), Grafana dashboards, the systemd unit,
and every dashboard query against a real Prometheus scraping a running daemon on a local swarm."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import json
import os
import re
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import SettingsFactory
from tests.helpers import run_process, wait_for_async
from tracker_watch.config import SwarmSettings, VerifySettings, settings_from_mapping
from tracker_watch.daemon import Daemon
from tracker_watch.demo.swarm import LocalSwarm
from tracker_watch.domain.targets import parse_target
from tracker_watch.ledger.targets import TargetStore
from tracker_watch.swarm.fdlimit import files_needed

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
# CI installs Debian's prometheus package; elsewhere these tests need it too, and say so
needs_prometheus = pytest.mark.skipif(shutil.which("promtool") is None and not os.environ.get("CI"),
                                      reason="promtool/prometheus not installed (apt-get install prometheus)")


def dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in (DEPLOY / "grafana" / "dashboards").glob("*.json")}


def panel_queries() -> list[tuple[str, str, str]]:
    return [(name, panel["title"], t["expr"]) for name, doc in dashboards().items() for panel in doc["panels"]
            for t in panel["targets"]]


def test_dashboards_are_generated_and_well_formed() -> None:
    spec = importlib.util.spec_from_file_location("build_dashboards", DEPLOY / "grafana" / "build_dashboards.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name, text in module.render().items():
        assert (DEPLOY / "grafana" / "dashboards" / name).read_text() == text, f"regenerate {name}"
    assert set(dashboards()) == {"overview.json", "target.json"}
    for doc in dashboards().values():
        assert doc["templating"]["list"][0]["type"] == "datasource"  # provisionable into any Grafana
        for panel in doc["panels"]:
            assert panel["fieldConfig"]["defaults"]["unit"], panel["title"]
            assert panel["datasource"]["uid"] == "${datasource}"
    for _, title, expr in panel_queries():
        for window in re.findall(r"(?:rate|increase|deriv)\([^\[]*\[([^\]]+)\]", expr):
            assert window == "$__rate_interval", title


@needs_prometheus
async def test_promtool() -> None:
    for args in (("check", "rules", "rules.yml"), ("check", "config", "prometheus.yml"),
                 ("test", "rules", "rules_test.yml")):
        code, out = await run_process("sh", "-c", f"cd {DEPLOY / 'prometheus'} && promtool {' '.join(args)}")
        assert code == 0, out
        assert "SUCCESS" in out


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd on this machine")
async def test_systemd_unit_verifies(tmp_path: Path) -> None:
    unit = (DEPLOY / "systemd" / "tracker-watch.service").read_text()
    assert "Type=notify" in unit
    assert "WatchdogSec=" in unit
    # systemd-analyze checks that ExecStart exists: point it at this checkout's command
    command = Path(sys.executable).parent / "tracker-watch"
    unit = unit.replace("/opt/tracker-watch/.venv/bin/tracker-watch", str(command))
    (tmp_path / "tracker-watch.service").write_text(unit)
    code, out = await run_process("systemd-analyze", "verify", "--man=no", str(tmp_path / "tracker-watch.service"))
    assert code == 0, out
    assert out.strip() == "", out  # no unknown keys, no warnings


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd on this machine")
async def test_systemd_unit_config_and_exposure(tmp_path: Path) -> None:
    """The DynamicUser reads the root-only config through LoadCredential=; hardening keeps its score."""
    unit = (DEPLOY / "systemd" / "tracker-watch.service").read_text()
    assert "LoadCredential=tracker-watch.toml:/etc/tracker-watch/tracker-watch.toml" in unit
    assert re.search(r"^ExecStart=\S+ --config %d/tracker-watch.toml run --init$", unit, re.M)
    command = str(Path(sys.executable).parent / "tracker-watch")
    (tmp_path / "tracker-watch.service").write_text(unit.replace("/opt/tracker-watch/.venv/bin/tracker-watch", command))
    _, out = await run_process("systemd-analyze", "security", "--offline=yes", str(tmp_path / "tracker-watch.service"))
    score = re.search(r"Overall exposure level for \S+: ([0-9.]+)", out)
    assert score is not None, out
    assert float(score.group(1)) <= 1.6, out


def test_systemd_unit_allows_the_open_files_the_largest_configuration_needs() -> None:
    """The unit cannot raise its hard limit later (NoNewPrivileges, no capabilities): LimitNOFILE= must cover
    files_needed() at the top of every range, or libtorrent silently lowers connections_limit (was 65,536)."""
    unit = (DEPLOY / "systemd" / "tracker-watch.service").read_text()
    limit = re.search(r"^LimitNOFILE=(\d+)$", unit, re.M)
    assert limit is not None, "LimitNOFILE=N (soft and hard alike)"
    top = {section: {f.name: f.metadata["max"] for f in dataclasses.fields(cls) if "max" in f.metadata
                     and f.name in ("connections_limit", "probe_concurrency", "lanes")}
           for section, cls in (("swarm", SwarmSettings), ("verify", VerifySettings))}
    s = settings_from_mapping(top)
    assert s.swarm.connections_limit == 65_535
    assert files_needed(s.swarm, s.verify) <= int(limit.group(1)) <= 1_048_576  # the kernel's nr_open default


def test_make_install_has_no_test_tools() -> None:
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\ninstall:\n", 1)[1].split("\n\n", 1)[0]
    assert "pip install --quiet .\n" in recipe
    assert "[test]" not in recipe
    assert "install -m 0600 config/tracker-watch.example.toml" in recipe


@pytest.fixture
async def prometheus(tmp_path: Path) -> AsyncIterator[tuple[Path, str]]:
    """A real Prometheus, scraping whatever the test writes into its file_sd file, every second."""
    targets = tmp_path / "targets.json"
    targets.write_text("[]")
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: [{DEPLOY / 'prometheus' / 'rules.yml'}]\n"
        "scrape_configs:\n  - job_name: tracker-watch\n"
        f"    file_sd_configs: [{{files: ['{targets}'], refresh_interval: 1s}}]\n")
    port = _free_port()
    proc = await asyncio.create_subprocess_exec(
        "prometheus", f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}", stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL)
    try:
        yield targets, f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        await proc.wait()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def query(http: aiohttp.ClientSession, url: str, expr: str) -> list[Any]:
    async with http.get(f"{url}/api/v1/query", params={"query": expr}) as r:
        doc = await r.json()
    assert doc["status"] == "success", (expr, doc)
    result: list[Any] = doc["data"]["result"]
    return result


@needs_prometheus
async def test_every_panel_query_returns_data(prometheus: tuple[Path, str], make_settings: SettingsFactory,
                                              local_swarm: LocalSwarm) -> None:
    targets_file, url = prometheus
    daemon = Daemon(make_settings())
    await daemon.start()
    try:
        row, _ = await TargetStore(daemon.db.pool).register(
            parse_target(local_swarm.content.magnet([local_swarm.tracker.url])), "Studio", "Film", actor="test")
        targets_file.write_text(json.dumps([{"targets": [f"127.0.0.1:{daemon.metrics_server.port}"]}]))  # type: ignore[union-attr]
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{daemon.api.port}/healthz"):
                pass  # one API request, so the API panels have a series

            async def verified_and_scraped() -> bool:
                got = await query(http, url, 'tracker_watch_observations_total{grade="verified"}')
                return bool(got) and float(got[0]["value"][1]) > 0

            await wait_for_async(verified_and_scraped, timeout=90, step=1.0)
            await asyncio.sleep(5)  # a few more scrapes, so that every rate() has two points
            empty = []
            for name, title, expr in panel_queries():
                concrete = expr.replace("$__rate_interval", "30s").replace("$target", str(row.id)) \
                    .replace("$node", daemon.settings.node.name)
                if not await query(http, url, concrete):
                    empty.append(f"{name} / {title}: {concrete}")
            assert not empty, "panels without data:\n" + "\n".join(empty)
            uploaded = await query(http, url, "tracker_watch_payload_uploaded_bytes_total")
            assert float(uploaded[0]["value"][1]) == 0
            async with http.get(f"{url}/api/v1/rules") as r:
                rules = (await r.json())["data"]["groups"][0]["rules"]
            assert not [x["name"] for x in rules if x["state"] == "firing"]  # a healthy node raises no alert
    finally:
        await daemon.stop()
