"""The command line, run as a user would: a separate process, exit codes, stdout/stderr."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from tracker_watch.demo.swarm import make_content
from tracker_watch.ledger import migrate


def tw(*args: str, env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tracker_watch", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def env(pg_dsn: str, schema: str, tmp_path: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_WATCH_")}
    return {**base, "TRACKER_WATCH_DATABASE_DSN": pg_dsn, "TRACKER_WATCH_DATABASE_SCHEMA": schema,
            "TRACKER_WATCH_NODE_STATE_DIR": str(tmp_path / "state")}


async def _targets(pg_dsn: str, schema: str) -> int:
    conn = await asyncpg.connect(pg_dsn)
    try:
        exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{schema}.targets")
        return int(await conn.fetchval(f'SELECT count(*) FROM "{schema}".targets')) if exists else 0
    finally:
        await conn.close()


def test_migrate(env: dict[str, str], schema: str) -> None:
    result = tw("migrate", env=env)
    assert result.returncode == 0, result.stderr
    latest = max(m.version for m in migrate.available())
    assert f"schema {schema} at migration {latest:04d}" in result.stdout


def test_add_every_input_form_and_list(env: dict[str, str], tmp_path: Path) -> None:
    content = make_content(tmp_path, size=100_000, piece_length=16384)
    torrent = tmp_path / "film.torrent"
    torrent.write_bytes(content.torrent)
    forms = [
        (str(torrent), "(torrent)"),
        ("f" * 40, "(hex)"),
        ("e" * 64, "(hex)"),
        ("magnet:?xt=urn:btih:" + "d" * 40 + "&dn=X&tr=udp%3A%2F%2F127.0.0.1%3A6969", "(magnet)"),
    ]
    for value, kind in forms:
        result = tw("target", "add", value, "--work", "Film", "--owner", "Studio", env=env)
        assert result.returncode == 0, result.stderr
        assert "registered" in result.stdout
        assert kind in result.stdout
    again = tw("target", "add", "f" * 40, "--work", "Film", "--owner", "Studio", env=env)
    assert "already registered" in again.stdout
    listing = tw("target", "list", env=env)
    assert listing.returncode == 0
    assert listing.stdout.count("Studio / Film") == 4
    assert content.name in listing.stdout  # metadata from the .torrent


@pytest.mark.parametrize(("value", "message"), [
    ("a" * 39, "got 39"),
    ("magnet:?dn=nothing", "no xt=urn:btih"),
    ("TRUNCATED", "truncated"),
    ("/nonexistent/file.torrent", "cannot read"),
])
async def test_bad_input_exit_2_and_nothing_written(env: dict[str, str], tmp_path: Path, pg_dsn: str, schema: str,
                                                    value: str, message: str) -> None:
    if value == "TRUNCATED":
        content = make_content(tmp_path, size=100_000, piece_length=16384)
        path = tmp_path / "cut.torrent"
        path.write_bytes(content.torrent[:150])
        value = str(path)
    result = tw("target", "add", value, "--work", "W", "--owner", "O", env=env)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert await _targets(pg_dsn, schema) == 0


def test_config_error_names_the_key(env: dict[str, str]) -> None:
    result = tw("target", "list", env={**env, "TRACKER_WATCH_SWARM_CONNECTIONS_LIMIT": "many"})
    assert result.returncode == 2
    assert "swarm.connections_limit" in result.stderr
    bad_file = tw("--config", "/nonexistent.toml", "migrate", env=env)
    assert bad_file.returncode == 2
    assert "cannot read config file" in bad_file.stderr


def test_evidence_export_errors(env: dict[str, str]) -> None:
    bad_ip = tw("evidence", "export", "--ip", "300.1.1.1", "--target", "1", env=env)
    assert bad_ip.returncode == 2
    assert "not an IP address" in bad_ip.stderr
    assert tw("target", "add", "a" * 40, "--work", "W", "--owner", "O", env=env).returncode == 0
    missing = tw("evidence", "export", "--ip", "1.2.3.4", "--target", "b" * 40, env=env)
    assert missing.returncode == 2
    assert "no target" in missing.stderr
    no_meta = tw("evidence", "export", "--ip", "1.2.3.4", "--target", "a" * 40, env=env)
    assert no_meta.returncode == 1
    assert "metadata is not known yet" in no_meta.stderr
    bad_time = tw("evidence", "export", "--ip", "1.2.3.4", "--target", "1", "--from", "yesterday", env=env)
    assert bad_time.returncode == 2
    assert "not an ISO-8601" in bad_time.stderr


def test_purge_dry_run(env: dict[str, str]) -> None:
    result = tw("ledger", "purge", "--dry-run", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("would redact: 0 incidents, 0 observations")


def test_isp_import_reports_every_bad_line_and_imports_nothing(env: dict[str, str], tmp_path: Path) -> None:
    leases = tmp_path / "leases.csv"
    leases.write_bytes(b"\xef\xbb\xbfprefix,port_from,port_to,valid_from,valid_to,subscriber\r\n"
                       b'203.0.113.7,,,2026-01-01,,"S1\n203.0.113.8,,,2026-01-01,,S2\n0.0.0.0/0,,,2026-01-01,,S3\n'
                       b"203.0.113.9,1,\xd9\xa3,2026-01-01,,S4\n203.0.113.10,,,2026-01-01,,S\xff\n")
    bad = tw("isp", "import", str(leases), "--isp", "Kaz Telecom", env=env)
    assert bad.returncode == 2
    assert [line.split(": ", 3)[-1] for line in bad.stderr.splitlines()] == [
        "line 2: malformed quoting (unexpected end of data)",
        "line 4: prefix '0.0.0.0/0' is shorter than /8 (IPv4): a lease names one subscriber's addresses",
        "line 5: port '\u0663' is not a number from 0 to 65535",
        "line 6: not UTF-8 text (byte 29)",
        "nothing imported (4 errors)"]
    assert "Traceback" not in bad.stderr


def test_isp_strikes_and_notices_commands(env: dict[str, str], tmp_path: Path) -> None:
    leases = tmp_path / "leases.csv"
    leases.write_text("prefix,port_from,port_to,valid_from,valid_to,subscriber\n"
                      "203.0.113.0/24,,,2026-01-01,,S1\n203.0.113.7,,,2026-01-01,,S2\n")
    bad = tw("isp", "import", str(leases), "--isp", "Kaz Telecom", env=env)
    assert bad.returncode == 2
    assert f"error: {leases}: line 3: overlaps the lease on line 2 (same addresses, ports and time)\n" in bad.stderr
    assert f"error: {leases}: nothing imported (1 error)" in bad.stderr
    leases.write_text("prefix,port_from,port_to,valid_from,valid_to,subscriber\n203.0.113.0/24,,,2026-01-01,,S1\n")
    ok = tw("isp", "import", str(leases), "--isp", "Kaz Telecom", env=env)
    assert ok.returncode == 0, ok.stderr
    assert "imported 1 leases" in ok.stdout
    assert tw("isp", "set", "Kaz Telecom", "--abuse-email", "abuse@kaz.example", "--drop-dir", str(tmp_path),
              env=env).returncode == 0
    listing = tw("isp", "list", env=env).stdout
    assert "Kaz Telecom" in listing
    assert "1 leases" in listing
    assert tw("strikes", "list", env=env).returncode == 0
    rebuilt = tw("strikes", "rebuild", env=env)
    assert "identical to the live ledger" in rebuilt.stdout
    missing = tw("strikes", "void", "99", "--reason", "x", "--by", "ana", env=env)
    assert missing.returncode == 2
    assert "no active strike 99" in missing.stderr
    assert tw("notices", "show", "5", env=env).returncode == 2


def test_pause_resume_and_a_poisoned_file(env: dict[str, str], tmp_path: Path) -> None:
    from tests.domain.test_torrents import POISON

    bad = tmp_path / "bad.torrent"
    bad.write_bytes(POISON["too few piece hashes"])
    refused = tw("target", "add", str(bad), "--work", "Film", "--owner", "Studio", env=env)
    assert refused.returncode == 2
    assert refused.stderr.strip() == ("tracker-watch: error: not a valid .torrent file: "
                                      "incorrect number of piece hashes in torrent file [libtorrent:12]")
    assert tw("target", "add", "a" * 40, "--work", "Film", "--owner", "Studio", env=env).returncode == 0
    paused = tw("target", "pause", "1", env=env)
    assert (paused.returncode, paused.stdout.strip()) == (0, "target 1 paused")
    assert "paused" in tw("target", "list", env=env).stdout
    assert tw("target", "resume", "1", env=env).returncode == 0
    unknown = tw("target", "resume", "99", env=env)
    assert unknown.returncode == 2
    assert "no target 99" in unknown.stderr
