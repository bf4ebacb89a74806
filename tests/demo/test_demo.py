"""`tracker-watch demo` end to end, exactly as `make demo` runs it (embedded PostgreSQL, local swarm).

This is also the suite's test on the embedded server: the demo ignores TRACKER_WATCH_TEST_DSN.
"""

from __future__ import annotations

import os
import subprocess
import sys


def test_demo_prints_the_table_and_cleans_up() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_WATCH_")}
    result = subprocess.run([sys.executable, "-m", "tracker_watch", "demo"], env=env, capture_output=True,
                            text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    lines = [line for line in out.splitlines() if line.strip().startswith("1  127.0.0.")]
    grades = {line.split()[1].rsplit(":", 1)[0]: line for line in lines}
    for seeder in ("127.0.0.11", "127.0.0.12", "127.0.0.13"):
        assert " verified " in grades[seeder] or " advertised " in grades[seeder]
    assert " listed " in grades["127.0.0.66"]
    # the strikes: every seeder struck (two as Demo Telecom subscribers, one unattributed), nobody else
    strikes = [line for line in out.splitlines() if " notification " in line]
    assert len(strikes) == 3
    assert sum("Demo Telecom/DT-" in line for line in strikes) == 2
    assert any("127.0.0.13 (unattributed)" in line for line in strikes)
    assert not [line for line in strikes if "127.0.0.66" in line or "127.0.0.77" in line]
    assert '<Infringement xmlns="http://www.acns.net/ACNS">' in out
    assert "<IP_Address>127.0.0.1" in out
    assert "evidence chain:" in out
    assert "intact" in out
    assert "payload uploaded by the monitor: 0 bytes" in out
    assert "result: OK" in out
    assert "cleaned up" in out
    assert "• web console: http://127.0.0.1:" in out  # and a token per role to sign in with
    assert sum(line.split()[-1].startswith("tw_") for line in out.splitlines() if line.startswith("    ")) >= 3
    workdir = next(line.split()[3] for line in out.splitlines() if line.startswith("• working directory"))
    assert not os.path.exists(workdir)  # database, payload, content: all gone
    still_running = subprocess.run(["pgrep", "-f", workdir], capture_output=True, text=True)
    assert still_running.stdout == ""  # the embedded PostgreSQL was stopped
