"""The node raises its open-file limit towards what connections_limit needs (issue 14: 10,000 busy swarms).

Each case runs in a child process with a low limit set before it starts, so the test process keeps its own.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SettingsFactory
from tracker_watch.config import SwarmSettings, VerifySettings
from tracker_watch.daemon import Daemon
from tracker_watch.swarm.fdlimit import files_needed

ROOT = Path(__file__).resolve().parents[2]
CHILD = """
import json, resource
from tracker_watch.swarm.fdlimit import raise_open_files
held = raise_open_files({need})
print("LIMIT", json.dumps([held, *resource.getrlimit(resource.RLIMIT_NOFILE)]), flush=True)
"""


def _child(need: int, soft: int, hard: int) -> tuple[list[int], str]:
    def low() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    proc = subprocess.run([sys.executable, "-c", CHILD.format(need=need)], preexec_fn=low,
                          capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          timeout=60, check=True)
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("LIMIT "))
    return list(json.loads(line[6:])), proc.stdout + proc.stderr


def test_the_soft_limit_rises_to_the_need_within_the_hard_one() -> None:
    held, out = _child(need=5000, soft=1024, hard=8192)
    assert held == [5000, 5000, 8192]
    assert "open_files_limit_raised" in out


def test_a_limit_above_the_need_is_left_alone() -> None:
    held, out = _child(need=2000, soft=4096, hard=8192)
    assert held == [4096, 4096, 8192]
    assert "open_files_limit" not in out


def _may_raise_hard_limit() -> bool:
    """CAP_SYS_RESOURCE (bit 24) in the effective set: root in this benchmark container lacks it."""
    status = Path("/proc/self/status").read_text()
    return bool(int(re.search(r"CapEff:\s*([0-9a-f]+)", status).group(1), 16) >> 24 & 1)  # type: ignore[union-attr]


@pytest.mark.skipif(not _may_raise_hard_limit(), reason="raising the hard limit needs CAP_SYS_RESOURCE")
def test_a_privileged_process_raises_the_hard_limit_too() -> None:
    held, _ = _child(need=30_000, soft=1024, hard=20_000)  # the benchmark shell's 20,000
    assert held == [30_000, 30_000, 30_000]


@pytest.mark.skipif(_may_raise_hard_limit(), reason="this process may raise its hard limit")
def test_without_cap_sys_resource_the_soft_limit_stops_at_the_hard_one_and_warns() -> None:
    held, out = _child(need=30_000, soft=1024, hard=4096)
    assert held == [4096, 4096, 4096]
    assert "open_files_limit_short" in out


def test_the_need_counts_libtorrents_share_and_the_verifiers_sockets() -> None:
    swarm, verify = SwarmSettings(connections_limit=8000), VerifySettings(probe_concurrency=32, lanes=2)
    base = files_needed(swarm, verify)
    assert base >= 8000 / 0.8 + 32  # libtorrent caps connections_limit at 80 % of the limit
    assert files_needed(dataclasses.replace(swarm, connections_limit=16_000), verify) == base + 10_000
    assert files_needed(swarm, dataclasses.replace(verify, probe_concurrency=64)) > base + 32


async def test_the_daemon_holds_its_connections_limit_under_a_low_open_file_limit(
        make_settings: SettingsFactory) -> None:
    """Before: a soft limit of 2,048 made libtorrent hold 1,638 of the 4,000 connections asked for."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    settings = make_settings(swarm={"connections_limit": 4000})
    assert files_needed(settings.swarm, settings.verify) <= hard  # raising the soft limit alone is enough
    resource.setrlimit(resource.RLIMIT_NOFILE, (2048, hard))
    daemon = Daemon(settings)
    try:
        await daemon.start()
        assert daemon.engine is not None
        assert daemon.engine.session.get_settings()["connections_limit"] == 4000
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= files_needed(settings.swarm, settings.verify)
    finally:
        await daemon.stop()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
