from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest

from tracker_watch.config import ConfigError, Settings, load_settings
from tracker_watch.config_example import describe, render_example

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_contact_nobody() -> None:
    s = load_settings(None, env={})
    assert s.swarm.dht_bootstrap_nodes == []
    assert s.trackers.extra == []
    assert s.database.dsn == ""
    assert s.swarm.allowed_networks == []  # global unicast peers and trackers only


def test_file_then_environment(tmp_path: Path) -> None:
    path = tmp_path / "tw.toml"
    path.write_text('[swarm]\nconnections_limit = 50\nlisten_interfaces = ["127.0.0.2:7000"]\n'
                    '[database]\ndsn = "postgresql://a@b/c"\n')
    s = load_settings(path, env={"TRACKER_WATCH_SWARM_CONNECTIONS_LIMIT": "75",
                                 "TRACKER_WATCH_SWARM_DHT_ENABLED": "false",
                                 "TRACKER_WATCH_TRACKERS_EXTRA": "udp://127.0.0.1:1, http://127.0.0.1:2/announce",
                                 "TRACKER_WATCH_CONFIG": "ignored", "OTHER": "x"})
    assert s.swarm.connections_limit == 75
    assert s.swarm.listen_interfaces == ["127.0.0.2:7000"]
    assert s.swarm.dht_enabled is False
    assert s.trackers.extra == ["udp://127.0.0.1:1", "http://127.0.0.1:2/announce"]
    assert s.database.dsn == "postgresql://a@b/c"


@pytest.mark.parametrize(("toml", "env", "message"), [
    ("[swarm]\nconections_limit = 5\n", {}, r"unknown key swarm\.conections_limit"),
    ("[swram]\n", {}, r"unknown section \[swram\]"),
    ("[swarm]\nconnections_limit = \"many\"\n", {}, r"swarm\.connections_limit: expected an integer"),
    ("[swarm]\nconnections_limit = 1\n", {}, r"swarm\.connections_limit: must be at least 2"),
    ("[log]\nlevel = \"loud\"\n", {}, r"log\.level: must be one of"),
    ("[swarm]\nlisten_interfaces = [\"nowhere\"]\n", {}, r"swarm\.listen_interfaces: 'nowhere' is not host:port"),
    ("[swarm]\ndht_enabled = \"yes\"\n", {}, r"swarm\.dht_enabled: expected true or false"),
    ("[database]\ndsn = \"mysql://x\"\n", {}, r"database\.dsn: expected a postgresql:// URL"),
    ("", {"TRACKER_WATCH_SWARM_CONNECTIONS_LIMIT": "lots"}, r"swarm\.connections_limit: expected an integer"),
    ("", {"TRACKER_WATCH_NOPE_X": "1"}, r"unknown environment variable TRACKER_WATCH_NOPE_X"),
    ("", {"TRACKER_WATCH_SWARM_NOPE": "1"}, r"unknown key swarm\.nope"),
    ("[node]\nname = \"bad name!\"\n", {}, r"node\.name: 'bad name!' does not match"),
    ("not toml [", {}, r"not valid TOML"),
    ("[swarm]\nallowed_networks = [\"10.0.0.0/33\"]\n", {}, r"swarm\.allowed_networks: '10\.0\.0\.0/33' is not"),
    ("", {"TRACKER_WATCH_SWARM_DENIED_NETWORKS": "10.0.0.1/8"}, r"swarm\.denied_networks: '10\.0\.0\.1/8'"),
    ("[trackers]\nextra = [\"udp://t.example\"]\n", {}, r"trackers\.extra: .*needs a port"),
    ("[trackers]\nextra = [\"http://t.example/a\\r\\nX: 1\"]\n", {}, r"trackers\.extra: .*control character"),
])
def test_errors_name_the_key(tmp_path: Path, toml: str, env: dict[str, str], message: str) -> None:
    path = tmp_path / "tw.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match=message):
        load_settings(path, env=env)


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(Path("/nonexistent/tw.toml"), env={})


@pytest.mark.parametrize("name", ["tracker-watch.example.toml", "tracker-watch.local.toml"])
def test_shipped_configs_load(name: str) -> None:
    assert isinstance(load_settings(ROOT / "config" / name, env={}), Settings)


def test_example_is_generated_from_the_settings() -> None:
    path = ROOT / "config" / "tracker-watch.example.toml"
    if os.environ.get("TW_UPDATE_EXAMPLE"):
        path.write_text(render_example())
    assert path.read_text() == render_example(), "regenerate: TW_UPDATE_EXAMPLE=1 pytest tests/test_config.py"


def test_example_documents_every_key() -> None:
    text = (ROOT / "config" / "tracker-watch.example.toml").read_text()
    doc = tomllib.loads(text)
    documented = {(section, key) for section, table in doc.items() for key in table}
    assert documented == {(section, key) for section, key, _, _ in describe()}
    for _, _, _, help_text in describe():
        assert help_text
        assert help_text in text
