"""Real daemon processes for the fleet, fault and offline-start tests (test equipment): a config file, a node
process with its JSON log, the SQL the tests use to register targets and to wait for the schema, the check
that a ledger is whole, and the `conn` and `proxy` fixtures (tests/conftest.py loads this module as a
plugin: every test can ask for them, and a module's own fixture of the same name still wins)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.helpers import wait_for_async
from tests.pgproxy import PgProxy
from tracker_watch.ledger.verify import verify_ledger

DUPLICATES = """
SELECT count(*) FROM (SELECT 1 FROM observations GROUP BY target_id, ip, port, grade, observed_at, node,
                      piece_index HAVING count(*) > 1) d
"""


async def ledger_is_whole(conn: Any) -> None:
    """No observation twice, none folded into its incident twice, and a clean hash chain."""
    assert await conn.fetchval(DUPLICATES) == 0
    stored = await conn.fetchval("SELECT count(*) FROM observations")
    assert await conn.fetchval("SELECT coalesce(sum(observations), 0) FROM incidents") == stored
    report = await verify_ledger(conn)
    assert report.ok, report


def toml(sections: dict[str, dict[str, Any]]) -> str:
    lines = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def node_config(tmp: Path, dsn: str, schema: str, name: str, ip: str, **extra: dict[str, Any]) -> Path:
    """A node's config file: peers on `ip`, a state directory of its own, short intervals (the tests wait for
    what they need, and need it soon); `extra` replaces keys section by section."""
    sections: dict[str, dict[str, Any]] = {
        "node": {"name": name, "state_dir": str(tmp / name)},
        "database": {"dsn": dsn, "schema": schema},
        "log": {"format": "json", "level": "info"},
        "swarm": {"listen_interfaces": [f"{ip}:0"], "outgoing_interfaces": [ip], "dht_enabled": False,
                  "peer_refresh_s": 2.0, "payload_dir": str(tmp / name / "payload"),
                  "allowed_networks": ["127.0.0.0/8"]},  # the local swarm is on loopback
        "trackers": {"min_interval_s": 2.0, "max_interval_s": 4.0},
        "collector": {"flush_interval_s": 0.2},
        "daemon": {"target_poll_s": 0.5},
        "api": {"enabled": False},
        "metrics": {"enabled": False},
    }
    for section, values in extra.items():
        sections.setdefault(section, {}).update(values)
    path = tmp / f"{name}.toml"
    path.write_text(toml(sections))
    return path


def clean_env() -> dict[str, str]:
    """The environment of a child process: none of the developer's (or the test run's) TRACKER_WATCH_*."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_WATCH_")}


class Node:
    """One daemon process with its JSON log."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config, self.log = config, log
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tracker_watch", "--config", str(self.config), "run",
                stdout=out, stderr=subprocess.STDOUT, env=clean_env())

    async def signal(self, sig: int) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return await asyncio.wait_for(self.proc.wait(), 20)

    async def stop(self) -> int:
        """SIGTERM, as systemd stops it: returns the exit code."""
        return await self.signal(signal.SIGTERM)

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.startswith("{")]

    def events(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.lines() if e["event"] == name]

    def watching(self) -> set[str]:
        """Infohashes this node runs now, from its own log."""
        lines = self.lines()
        added = [e["infohash"] for e in lines if e["event"] == "swarm_added"]
        running: set[str] = set()
        for e in lines:
            if e["event"] == "swarm_added":
                running.add(e["infohash"])
            elif e["event"] == "swarm_removed":
                running.discard(e["infohash"])
        assert set(added) >= running
        return running

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`tracker-watch --config CONFIG ARGS…` in a process of its own."""
    return subprocess.run([sys.executable, "-m", "tracker_watch", "--config", str(config), *args], env=clean_env(),
                          capture_output=True, text=True, timeout=120)


async def schema_ready(conn: asyncpg.Connection) -> None:
    """Until a node has migrated the schema (the last table an older migration made is there)."""
    async def ready() -> bool:
        return bool(await conn.fetchval("SELECT to_regclass('target_leases') IS NOT NULL"))
    await wait_for_async(ready, timeout=60)


async def register(conn: asyncpg.Connection, infohash: bytes, holder: str = "S",
                   trackers: list[str] | None = None) -> int:
    """A target of `holder`'s work "F" (both made if new), by SQL as another node's API would write it."""
    h = await conn.fetchval("INSERT INTO rights_holders (name) VALUES ($1) ON CONFLICT (name) "
                            "DO UPDATE SET name = EXCLUDED.name RETURNING id", holder)
    work = await conn.fetchval("INSERT INTO works (holder_id, title) VALUES ($1, 'F') ON CONFLICT (holder_id, title) "
                               "DO UPDATE SET title = EXCLUDED.title RETURNING id", h)
    return int(await conn.fetchval("INSERT INTO targets (work_id, infohash_v1, input_kind, trackers) "
                                   "VALUES ($1, $2, 'magnet', $3) RETURNING id", work, infohash, trackers or []))


async def add_target(conn: asyncpg.Connection, infohash: bytes, trackers: list[str] | None = None) -> int:
    return await register(conn, infohash, "S", trackers)


@pytest.fixture
async def conn(pg_dsn: str, schema: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the test's schema (made here if no node has made it yet)."""
    c = await asyncpg.connect(pg_dsn)
    await c.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    await c.execute(f'SET search_path TO "{schema}"')
    yield c
    await c.close()


@pytest.fixture
async def proxy(pg_dsn: str) -> AsyncIterator[PgProxy]:
    """A proxy in front of the test server, to take the database away from a node and give it back."""
    p = PgProxy(pg_dsn)
    await p.up()
    yield p
    await p.down()
