"""`tracker-watch demo`: the whole path on one machine, in under a minute, leaving nothing behind.

A local swarm (tracker, three seeders, one decoy) on 127.0.0.x; the real daemon on an embedded
PostgreSQL in a temporary directory, listening on 127.0.0.2; the work registered by magnet as a rights
holder would; then the evidence per peer address as the ledger holds it.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tracker_watch import log
from tracker_watch.cli import print_peer_table
from tracker_watch.config import Settings, settings_from_mapping
from tracker_watch.daemon import Daemon
from tracker_watch.demo.liar import LIAR_IP
from tracker_watch.demo.strikes import ISP, lease_seeders, show_strikes
from tracker_watch.demo.swarm import DECOY_IP, LocalSwarm
from tracker_watch.domain.addresses import LOOPBACK_NETWORKS
from tracker_watch.domain.targets import parse_target
from tracker_watch.ledger.observations import ObservationStore
from tracker_watch.ledger.targets import TargetStore
from tracker_watch.ledger.verify import verify_ledger

MONITOR_IP = "127.0.0.2"
PROBE_IP = "127.0.0.3"  # verification connections come from a second address (docs/verification.md)


def demo_settings(state_dir: Path, dsn: str = "", schema: str = "tracker_watch") -> Settings:
    """Settings for a monitor on a loopback swarm: fast announces and refreshes, nothing public."""
    return settings_from_mapping({
        "node": {"name": "demo", "state_dir": str(state_dir)},
        "database": {"dsn": dsn, "schema": schema},
        "log": {"format": "console", "level": "warning"},
        "swarm": {"listen_interfaces": [f"{MONITOR_IP}:0"], "outgoing_interfaces": [MONITOR_IP],
                  "dht_enabled": False, "peer_refresh_s": 3.0, "payload_dir": str(state_dir / "payload"),
                  # the local swarm lives on loopback, which a production monitor never dials
                  "allowed_networks": list(LOOPBACK_NETWORKS)},
        "trackers": {"min_interval_s": 2.0, "max_interval_s": 5.0, "timeout_s": 5.0},
        "collector": {"flush_interval_s": 0.2, "reobserve_s": 60.0},
        "verify": {"redial_s": 5.0, "probe_interface": PROBE_IP, "retry_base_s": 2.0, "retry_max_s": 10.0},
        # loopback has no country: treat it as Kazakhstan, the jurisdiction the policy covers
        "policy": {"test_country": "KZ", "evaluate_interval_s": 1.0},
        "notices": {"delivery_interval_s": 1.0, "complainant_email": "notices@demo-studios.example"},
        "daemon": {"target_poll_s": 0.5},
        "api": {"listen": "127.0.0.1:0"},
        "metrics": {"listen": "127.0.0.1:0", "refresh_s": 2.0},
    })


async def run_demo(observe_s: float = 40.0, serve_s: float | None = None) -> int:
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="tracker-watch-demo-"))
    settings = demo_settings(tmp / "state")
    log.configure(settings.log, node="demo", stream=sys.stderr)
    swarm = LocalSwarm(seeders=3, decoy=True, liar=True, base=tmp / "swarm")
    daemon = Daemon(settings)
    print(f"• working directory {tmp} (removed at the end)")
    try:
        await swarm.start()
        print(f"• local swarm: tracker {swarm.tracker.url}, seeders {', '.join(swarm.seeder_ips)}, "
              f"decoy {DECOY_IP} (announces only), liar {LIAR_IP} (claims every piece, sends garbage)")
        print("• starting tracker-watch (embedded PostgreSQL, libtorrent on 127.0.0.2) …")
        await daemon.start()
        await lease_seeders(daemon, swarm.seeder_ips, tmp / "notices")
        print(f"• lease data of '{ISP}' imported: {', '.join(swarm.seeder_ips[:2])} are its subscribers")
        magnet = swarm.content.magnet([swarm.tracker.url])
        row, _ = await TargetStore(daemon.db.pool).register(
            parse_target(magnet), holder="Demo Studios", work="Demo Film", actor="demo")
        print(f"• registered by magnet as 'Demo Studios': target {row.id}, {row.key}")
        await _console_tokens(daemon, serve_s)
        print(f"• observing for up to {observe_s:.0f} s …")
        expected = {*swarm.seeder_ips}
        rows = await _observe(daemon, expected, observe_s)
        uploaded = daemon.engine.uploaded_payload_bytes() if daemon.engine else -1
        print()
        print_peer_table(rows)
        print()
        _summary(rows, uploaded)
        struck = await show_strikes(daemon, swarm.seeder_ips, [DECOY_IP, LIAR_IP])
        print()
        chain_ok = await _chain(daemon)
        ok = _verdict(rows, expected, uploaded) and chain_ok and struck
        if serve_s:
            await _serve(daemon, row.id, serve_s)
    finally:
        await daemon.stop()
        await swarm.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"• cleaned up; demo took {time.monotonic() - started:.0f} s")
    return 0 if ok else 1


async def _console_tokens(daemon: Daemon, serve_s: float | None) -> None:
    """The web console's address and a token per role, to sign in with while the demo runs (or is served)."""
    from tracker_watch.api.auth import create_token

    if daemon.api is None:
        return
    async with daemon.db.pool.acquire() as conn:
        tokens = [(role, name, (await create_token(conn, role, name, "demo"))[1]) for role, name in
                  (("rightsholder", "Demo Studios"), ("isp", ISP), ("operator", "demo operator"))]
    print(f"• web console: http://127.0.0.1:{daemon.api.port}/console/ "
          f"({'served after the demo' if serve_s else 'while the demo runs; add --serve to keep it'}); sign in with")
    for role, name, token in tokens:
        print(f"    {role:<12} {name:<14} {token}")


async def _serve(daemon: Daemon, target_id: int, serve_s: float) -> None:
    """Keep the daemon (and its console) up after the demo. The demo target is paused first: the evidence
    writer has been sealed and closed by now, so nothing new should be observed."""
    await TargetStore(daemon.db.pool).set_status(target_id, "paused", actor="demo")
    port = daemon.api.port if daemon.api is not None else 0
    print(f"\n• serving the web console at http://127.0.0.1:{port}/console/ for {serve_s:.0f} s "
          "(Ctrl-C to stop; sign in with a token printed above); the demo target is paused, its evidence, "
          "strikes and notices are all there")
    await asyncio.sleep(serve_s)  # Ctrl-C cancels it; run_demo's finally stops everything


async def _observe(daemon: Daemon, expected: set[str], observe_s: float) -> list[Any]:
    store = ObservationStore(daemon.db.pool)
    deadline = time.monotonic() + observe_s
    rows: list[Any] = []
    while time.monotonic() < deadline:
        await asyncio.sleep(1.0)
        rows = await store.latest_by_peer()
        graded = by_ip(rows)
        verified = {ip for ip, g in graded.items() if g == "verified"}
        if expected <= verified and DECOY_IP in graded and graded.get(LIAR_IP) == "corrupt":
            break
    return await store.latest_by_peer()


async def _chain(daemon: Daemon) -> bool:
    """Seal what was written with a signed checkpoint, then check the chain as `ledger verify` does."""
    assert daemon.batcher is not None
    assert daemon.writer is not None
    await daemon.batcher.stop(timeout=5)
    await daemon.writer.checkpoint()
    async with daemon.db.pool.acquire() as conn:
        report = await verify_ledger(conn)
    print(f"evidence chain: {report.rows} rows, every one hash-linked to the last, sealed by a signed checkpoint: "
          f"{'intact' if report.ok else 'BROKEN'}")
    return report.ok


def by_ip(rows: list[Any]) -> dict[str, str]:
    """One grade per address: corrupt if any port of it lied, else the best any port earned."""
    rank = {"listed": 0, "handshake": 1, "advertised": 2, "verified": 3}
    out: dict[str, str] = {}
    for r in rows:
        ip, grade = r["ip"], r["grade"]
        if out.get(ip) == "corrupt" or grade == "corrupt":
            out[ip] = "corrupt"
        elif ip not in out or rank[grade] > rank[out[ip]]:
            out[ip] = grade
    return out


def _summary(rows: list[Any], uploaded: int) -> None:
    by_grade: dict[str, int] = {}
    for r in rows:
        by_grade[r["grade"]] = by_grade.get(r["grade"], 0) + 1
    grades = ", ".join(f"{n} {g}" for g, n in sorted(by_grade.items()))
    print(f"summary: {len(rows)} peer addresses ({grades}); payload uploaded by the monitor: {uploaded} bytes")
    graded = by_ip(rows)
    print(f"decoy {DECOY_IP}: {graded.get(DECOY_IP, 'not seen')} — a tracker listed it; it never answered, "
          "so it can never count toward a strike")
    print(f"liar {LIAR_IP}: {graded.get(LIAR_IP, 'not seen')} — it claimed every piece, but a piece it alone "
          "sent failed the hash check")


def _verdict(rows: list[Any], expected: set[str], uploaded: int) -> bool:
    graded = by_ip(rows)
    ok = all(graded.get(ip) in ("advertised", "verified") for ip in expected)
    ok = ok and graded.get(DECOY_IP) == "listed" and graded.get(LIAR_IP) == "corrupt" and uploaded == 0
    print("result: OK" if ok else "result: UNEXPECTED — see the table above")
    return ok
