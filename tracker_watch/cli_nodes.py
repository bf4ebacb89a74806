"""Command-line actions on the fleet: `tracker-watch nodes`, `node drain NAME`, `node undrain NAME`.

Drain is a flag in the database (`nodes.drained_at`), not a signal to a process: the node reads it within
`daemon.target_poll_s`, hands every swarm lease back, and keeps running idle (heartbeating, writing what its
spool holds) until `node undrain`. The flag outlives a restart, so a node restarted for maintenance does
not pull work back before the operator says so (docs/scaling.md, "Drain").
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Coroutine
from datetime import UTC
from typing import Any

from tracker_watch.cli_ledger import EXIT_OK, usage
from tracker_watch.config import Settings

_NODES = """
SELECT n.name, n.version, n.max_targets, n.heartbeat_at, n.stopped_at, n.drained_at, n.spool_records,
       n.spool_bytes, now() AS now,
       n.stopped_at IS NULL AND n.heartbeat_at > now() - $1 * interval '1 second' AS alive,
       (SELECT count(*) FROM swarm_leases l WHERE l.node = n.name AND l.expires_at > now()) AS swarms,
       (SELECT count(*) FROM target_leases l WHERE l.node = n.name AND l.expires_at > now()) AS targets
FROM nodes n ORDER BY n.name
"""


def add_parsers(sub: Any) -> None:
    sub.add_parser("nodes", help="the fleet: versions, state, leases, spool depth, last heartbeat")
    node = sub.add_parser("node", help="drain or undrain a node").add_subparsers(dest="action", required=True)
    node.add_parser("drain", help="hand every lease of a node back and take no new ones").add_argument(
        "name", help="node.name of the node (see `tracker-watch nodes`)")
    node.add_parser("undrain", help="let a drained node take leases again").add_argument("name")


def _state(r: Any) -> str:
    if r["stopped_at"] is not None:
        return "stopped"
    if not r["alive"]:
        return "silent"
    return "drained" if r["drained_at"] is not None else "alive"


async def nodes(db: Any, settings: Settings, args: argparse.Namespace) -> int:
    rows = await db.pool.fetch(_NODES, settings.node.lease_ttl_s)
    print(f"{'node':<20} {'state':<8} {'version':<22} {'swarms':>13} {'targets':>7} {'spool':>17}  last heartbeat")
    for r in rows:
        spool = "-" if r["spool_records"] is None else f"{r['spool_records']} ({_size(r['spool_bytes'])})"
        ago = (r["now"] - r["heartbeat_at"]).total_seconds()
        beat = f"{r['heartbeat_at'].astimezone(UTC):%Y-%m-%d %H:%M:%S}Z ({_ago(ago)} ago)"
        print(f"{r['name'][:20]:<20} {_state(r):<8} {r['version'][:22]:<22} {r['swarms']:>6} / {r['max_targets']:<4} "
              f"{r['targets']:>7} {spool:>17}  {beat}")
    if not rows:
        print("no node has started yet")
    return EXIT_OK


async def drain(db: Any, settings: Settings, args: argparse.Namespace) -> int:
    draining = args.action == "drain"
    async with db.pool.acquire() as conn, conn.transaction():
        done = await conn.fetchval(
            "UPDATE nodes SET drained_at = CASE WHEN $2 THEN coalesce(drained_at, now()) END WHERE name = $1 "
            "RETURNING name", args.name, draining)
        if done is None:
            return usage(f"no node {args.name!r} (see `tracker-watch nodes`)")
        await conn.execute("INSERT INTO audit_log (actor, action, object) VALUES ($1, $2, $3)",
                           f"cli:{os.environ.get('USER', 'unknown')}", f"node.{args.action}", f"node:{args.name}")
    if draining:
        print(f"node {args.name} drained: it hands its leases back within daemon.target_poll_s and takes none "
              f"until `tracker-watch node undrain {args.name}`")
    else:
        print(f"node {args.name} undrained: it takes its share again at its next heartbeat")
    return EXIT_OK


def _size(n: int | None) -> str:
    value = float(n or 0)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def _ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.0f} h"


COMMANDS: dict[tuple[str, str | None], Callable[[Any, Settings, argparse.Namespace], Coroutine[Any, Any, int]]] = {
    ("nodes", None): nodes, ("node", "drain"): drain, ("node", "undrain"): drain}
