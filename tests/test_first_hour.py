"""README's "Running the daemon", followed literally: the shell lines of the block marked `<!-- first-hour -->`
are run one by one, as a newcomer would, from a fresh directory; the lab and the daemon in the background.

The commands are not copied here: when the README drifts (a renamed option, a file the lab no longer
writes, a step that no longer leads to a notice) this test fails. What it adds is the environment — a
`.venv/bin/tracker-watch` that runs this checkout, the CI PostgreSQL (its own schema) when
TRACKER_WATCH_TEST_DSN is set, and API and metrics on free ports — and what each step must show, waiting
for it where the README says to repeat a command.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WAIT_S = 180.0  # the most any step may take to show what it should (conditions are polled, never timed)

# command pattern → what its output must (eventually) show; every pattern must match a README line
EXPECT: dict[str, re.Pattern[str]] = {
    r"tracker-watch lab\b": re.compile(r"lab: running until"),
    r" run$": re.compile(r'"event": "daemon_started"'),
    r" migrate --init$": re.compile(r"schema \w+ at migration \d{4}"),
    r" isp import ": re.compile(r"imported 2 leases"),
    r" isp set ": re.compile(r"ISP Lab Telecom saved"),
    r" target add ": re.compile(r"target 1 registered"),
    r" peers$": re.compile(r"(?s)(?=.*127\.0\.0\.11:\d+ .* verified)(?=.*127\.0\.0\.12:\d+ .* verified)"
                           r"(?=.*127\.0\.0\.13:\d+ .* verified)(?=.*127\.0\.0\.66:\d+ .* listed)"
                           r"(?=.*127\.0\.0\.77:\d+ .* corrupt)"),
    r" strikes list$": re.compile(r"(?s)(?=.*Lab Telecom/LAB-1000 +127\.0\.0\.11 )"
                                  r"(?=.*Lab Telecom/LAB-1001 +127\.0\.0\.12 )(?=.*127\.0\.0\.13 \(unattributed\))"),
    r" notices list$": re.compile(r"(?s)(?=(?:.*Lab Telecom +delivered){2})(?=.*held)"),
    r"^ls lab/isp-drop/$": re.compile(r"(?s)(?=.*\.xml)(?=.*\.json)"),
    r" ledger verify$": re.compile(r"OK: \d+ evidence rows checked"),
    r" evidence export ": re.compile(r"wrote lab/evidence-target1-127\.0\.0\.11-\d{8}T\d{6}Z\.zip"),
    r"verify\.py": re.compile(r"."),
}


def readme_commands(text: str) -> list[str]:
    """The shell lines of the code block after `<!-- first-hour -->`, continuations joined, comments dropped."""
    block = text.split("<!-- first-hour -->", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    joined = re.sub(r"\\\n\s*", "", block)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def expectation(command: str) -> re.Pattern[str] | None:
    found = [p for pattern, p in EXPECT.items() if re.search(pattern, command)]
    assert len(found) <= 1, command
    return found[0] if found else None


@pytest.fixture
def workdir(tmp_path: Path, schema: str) -> tuple[Path, dict[str, str]]:
    """A fresh directory as the README assumes: the clone's config/, a .venv/bin/tracker-watch of this checkout."""
    (tmp_path / "config").symlink_to(ROOT / "config")
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "tracker-watch").write_text(f'#!/bin/sh\nexec {sys.executable} -m tracker_watch "$@"\n')
    (bin_dir / "tracker-watch").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_WATCH_")}
    env["PYTHONPATH"] = str(ROOT)
    # free ports for what the walk-through does not use, so a busy 8080 on this machine cannot fail it
    env["TRACKER_WATCH_API_LISTEN"] = "127.0.0.1:0"
    env["TRACKER_WATCH_METRICS_LISTEN"] = "127.0.0.1:0"
    if dsn := os.environ.get("TRACKER_WATCH_TEST_DSN"):  # CI's PostgreSQL rather than a new embedded one
        env["TRACKER_WATCH_DATABASE_DSN"] = dsn
        env["TRACKER_WATCH_DATABASE_SCHEMA"] = schema
    return tmp_path, env


def wait_output(path: Path, proc: subprocess.Popen[bytes], want: re.Pattern[str]) -> str:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        text = path.read_text(errors="replace")
        if want.search(text):
            return text
        assert proc.poll() is None, f"exited with {proc.returncode}:\n{text[-3000:]}\n" + \
            path.with_suffix(".err").read_text(errors="replace")[-3000:]
        time.sleep(0.2)
    raise AssertionError(f"never showed {want.pattern!r}:\n{path.read_text(errors='replace')[-3000:]}")


def run_until(command: str, cwd: Path, env: dict[str, str], want: re.Pattern[str] | None) -> str:
    """Run a README line (again, while its output does not yet show what it should)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        result = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True,
                                timeout=WAIT_S)
        out = result.stdout + result.stderr
        assert result.returncode == 0, f"{command}\nexit {result.returncode}:\n{out}"
        if want is None or want.search(out):
            return out
        assert time.monotonic() < deadline, f"{command}\nnever showed {want.pattern!r}:\n{out}"
        time.sleep(1.0)


def test_readme_first_hour(workdir: tuple[Path, dict[str, str]]) -> None:
    cwd, env = workdir
    commands = readme_commands((ROOT / "README.md").read_text())
    assert {p for p in EXPECT if not any(re.search(p, c) for c in commands)} == set(), "README lost a step"
    background: list[tuple[str, subprocess.Popen[bytes], Path]] = []
    try:
        for i, command in enumerate(commands):
            want = expectation(command)
            if re.search(r"tracker-watch lab\b| run$", command):  # long-running: its own "terminal"
                out = cwd / f"background-{i}.log"
                with out.open("wb") as f, out.with_suffix(".err").open("wb") as err:
                    proc = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=cwd, env=env, stdout=f,
                                            stderr=err)
                background.append((command, proc, out))
                assert want is not None
                wait_output(out, proc, want)
            else:
                run_until(command, cwd, env, want)
        assert sorted(p.name for p in (cwd / "lab" / "isp-drop").iterdir())  # the delivered notices
    finally:
        for _, proc, _ in reversed(background):  # Ctrl-C, as the README says
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for _, proc, _ in background:
            proc.wait(timeout=60)
    for command, proc, out in background:
        assert proc.returncode == 0, f"{command}: exit {proc.returncode}\n{out.read_text()[-3000:]}"
    daemon_log = next(out for command, _, out in background if command.endswith(" run")).read_text()
    check_daemon_log(daemon_log)


def check_daemon_log(text: str) -> None:
    """Not a terminal, so JSON whatever the config says; documented keys; where it listens."""
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert all({"timestamp", "level", "event", "node"} <= set(line) for line in lines)
    started = next(line for line in lines if line["event"] == "daemon_started")
    assert started["peers_listen"] == ["127.0.0.2:6881"]
    assert re.fullmatch(r"127\.0\.0\.1:\d+", started["api_listen"])
    assert re.fullmatch(r"127\.0\.0\.1:\d+", started["metrics_listen"])
    assert any(line["event"] == "placeholder_contact" for line in lines)
    swarm_lines = [line for line in lines if "infohash" in line and line["event"] != "announce_failed"]
    assert swarm_lines
    assert all(line.get("target") == 1 for line in swarm_lines), [ln for ln in swarm_lines if "target" not in ln]
    assert any(line["event"] == "notice_delivered" for line in lines)
    assert lines[-1]["event"] == "daemon_stopped"
