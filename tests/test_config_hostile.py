"""Hostile settings: every number finite and in its range, text matched in full, odd files refused on one line."""

from __future__ import annotations

import dataclasses
import math
import os
import re
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracker_watch.config import MAX_FILE_BYTES, SECTIONS, ConfigError, load_settings, settings_from_mapping
from tracker_watch.config_values import EnvText, convert

NUMERIC = [(section, f.name, typing.get_type_hints(cls)[f.name], f.metadata)
           for section, cls in SECTIONS.items() for f in dataclasses.fields(cls)
           if typing.get_type_hints(cls)[f.name] in (int, float)]
NUMERIC_IDS = [f"{section}.{key}" for section, key, _, _ in NUMERIC]
INT32_MAX = 2**31 - 1


def one_line_error(path: Path | None, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(path, env=env or {})
    message = str(info.value)
    assert "\n" not in message, message
    assert len(message) < 400, message
    return message


@pytest.mark.parametrize(("section", "key", "typ", "meta"), NUMERIC, ids=NUMERIC_IDS)
def test_every_number_declares_a_range_that_holds_its_default(section: str, key: str, typ: type, meta: Any) -> None:
    default = getattr(SECTIONS[section](), key)
    assert meta["min"] <= default <= meta["max"]
    assert math.isfinite(meta["min"])
    assert math.isfinite(meta["max"])
    if typ is int and not key.endswith(("_bytes", "_per_day")):
        # counts and durations reach libtorrent (int settings) or 32-bit PostgreSQL columns
        assert meta["max"] <= INT32_MAX


def _bad_values(typ: type, meta: Any) -> list[tuple[str, str]]:
    """(TOML text, environment text) of values that must be refused."""
    below, above = meta["min"] - (1 if typ is int else 0.001), meta["max"] + (1 if typ is int else 0.001)
    return [("nan", "nan"), ("inf", "inf"), ("-inf", "-inf"), ("nan", "NaN"), ("1e999", "1e999"),
            (str(2**40 if typ is float else 10**30), "1e30" if typ is float else str(10**30)),
            ("9" * 5000, "9" * 4000), ("-1", "-1"), (repr(below), repr(below)), (repr(above), repr(above)),
            ('"5"', "5\n"), ("true", "١٢"), ("[1]", "")]


@pytest.mark.parametrize(("section", "key", "typ", "meta"), NUMERIC, ids=NUMERIC_IDS)
def test_every_number_refuses_nan_infinity_huge_negative_and_out_of_range(
        tmp_path: Path, section: str, key: str, typ: type, meta: Any) -> None:
    path = tmp_path / "tw.toml"
    for toml_value, env_value in _bad_values(typ, meta):
        if toml_value == "-1" and meta["min"] <= -1:  # pragma: no cover - no setting allows negatives
            continue
        path.write_text(f"[{section}]\n{key} = {toml_value}\n")
        message = one_line_error(path)
        assert message.startswith(f"{section}.{key}: ") or message.startswith("config file "), message
        message = one_line_error(None, {f"TRACKER_WATCH_{section.upper()}_{key.upper()}": env_value})
        assert message.startswith(f"{section}.{key}: "), (env_value, message)


@pytest.mark.parametrize(("section", "key", "typ", "meta"), NUMERIC, ids=NUMERIC_IDS)
def test_every_number_accepts_both_ends_of_its_range(section: str, key: str, typ: type, meta: Any) -> None:
    for bound in (meta["min"], meta["max"]):
        for value in (bound, EnvText(repr(bound))):
            got = convert(f"{section}.{key}", typ, value, meta)
            assert got == bound
            assert type(got) is typ


@pytest.mark.parametrize(("section", "key", "value"), [
    ("node", "name", "node-1\n"), ("database", "schema", "tracker_watch\n"), ("policy", "test_country", "KZ\n"),
    ("notices", "complainant_email", "a@b.example\n"), ("node", "state_dir", "/var/lib/tw\x00"),
    ("database", "dsn", "postgresql://x/y\r\n"), ("swarm", "listen_interfaces", ["127.0.0.1:1\n"]),
    ("trackers", "extra", ["udp://127.0.0.1:1\x1b[31m"]), ("api", "listen", "127.0.0.1:٨٠"),
    ("metrics", "listen", "127.0.0.1:" + "9" * 5000), ("swarm", "payload_dir", "x" * 5000),
    ("policy", "jurisdictions", ["KZ"] * 2000), ("log", "level", ["info"]),
])
def test_text_is_matched_in_full_without_control_characters(section: str, key: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=rf"\A{section}\.{key}: ") as info:
        settings_from_mapping({section: {key: value}})
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("content", "message"), [
    (b'[node]\nname = "caf\xe9"\n', r"is not UTF-8 \(byte 18\)"),
    (b"[swarm]\nlisten_interfaces = " + b"[" * 5000 + b"]" * 5000 + b"\n", r"nests arrays or tables too deeply"),
    (b"[swarm]\nx = " + b"{a=" * 5000 + b"1" + b"}" * 5000 + b"\n", r"nests arrays or tables too deeply"),
    (b"[swarm]\nconnections_limit = " + b"9" * 5000 + b"\n", r"holds a number too long to read"),
    (b"# " + b"x" * MAX_FILE_BYTES + b"\n", r"is larger than 1048576 bytes"),
    (b'"sw\\narm" = {}\n', r"unknown section \['sw\\narm'\]"),
    (b'[swarm]\n"a\\u0000b" = 1\n', r"unknown key swarm\.'a\\x00b'"),
    (b"swarm = 5\n", r"swarm: expected a table \[swarm\], got 5"),
    (b"[swarm.extra]\n", r"unknown key swarm\.extra"),
    (b"[node]\nname = 1979-05-27\n", r"node\.name: expected a string, got datetime\.date"),
])
def test_odd_files_are_one_line_errors(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "tw.toml"
    path.write_bytes(content)
    assert re.search(message, one_line_error(path))


def test_a_directory_is_not_a_config_file(tmp_path: Path) -> None:
    assert "cannot read config file" in one_line_error(tmp_path)


def test_odd_environment_is_one_line_error() -> None:
    assert "unknown environment variable 'TRACKER_WATCH_A\\nB'" in one_line_error(None, {"TRACKER_WATCH_A\nB": "1"})
    # undecodable bytes arrive as surrogate escapes
    assert one_line_error(None, {"TRACKER_WATCH_NODE_NAME": "n\udcff"}).startswith("node.name: control character")


_SCALARS = (st.none() | st.booleans() | st.integers() | st.integers(-(2**70), 2**70)
            | st.floats(allow_nan=True, allow_infinity=True) | st.text() | st.dates() | st.datetimes()
            | st.text().map(EnvText) | st.sampled_from(["info", "KZ", "127.0.0.1:1", "udp://x", "0.1"]).map(EnvText))
_VALUES = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=4)
                       | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=12)
_KEYS = st.sampled_from(sorted({f.name for cls in SECTIONS.values() for f in dataclasses.fields(cls)}))
_SECTION_NAMES = st.sampled_from(sorted(SECTIONS)) | st.text(max_size=8)
_TABLES = st.dictionaries(_KEYS | st.text(max_size=8), _VALUES, max_size=4) | _VALUES


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(_SECTION_NAMES, _TABLES, max_size=4) | _VALUES)
def test_settings_from_mapping_raises_only_config_errors(raw: Any) -> None:
    try:
        settings_from_mapping(raw)
    except ConfigError as exc:
        message = str(exc)
    else:
        return
    assert "\n" not in message


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_any_file_loads_or_gives_a_config_error(tmp_path_factory: pytest.TempPathFactory, content: bytes) -> None:
    path = tmp_path_factory.mktemp("cfg") / "tw.toml"
    path.write_bytes(content)
    try:
        load_settings(path, env={})
    except ConfigError as exc:
        message = str(exc)
    else:
        return
    assert "\n" not in message


@pytest.mark.parametrize(("content", "line"), [
    (b"[trackers]\ntimeout_s = inf\n", "trackers.timeout_s: must be a finite number, got inf"),
    (b"[swarm]\nalert_queue_size = 1099511627776\n", "swarm.alert_queue_size: must be at most 10_000_000, got "),
    (b"[node]\nname = \"\xff\"\n", " is not UTF-8 (byte 15)"),
])
def test_cli_reports_a_bad_setting_on_one_line_with_exit_2(tmp_path: Path, content: bytes, line: str) -> None:
    path = tmp_path / "tw.toml"
    path.write_bytes(content)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_WATCH_")}
    result = subprocess.run([sys.executable, "-m", "tracker_watch", "--config", str(path), "target", "list"],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stdout == ""
    [message] = result.stderr.splitlines()
    assert message.startswith("tracker-watch: config error: ")
    assert line in message
