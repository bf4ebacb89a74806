"""Operators' pages: nodes, leases, this node's spool and swarm engine, API tokens and the audit log.
(All tenants' strikes, with voiding, are on the strikes page; all targets on the targets page.)"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from prometheus_client import REGISTRY

from tracker_watch.api.auth import create_token
from tracker_watch.api.common import audit
from tracker_watch.api.keys import ENGINE, SETTINGS, db
from tracker_watch.console import queries
from tracker_watch.console.core import ConsoleError, flash, redirect, render, require

# this node's own gauges, as its /metrics exports them (absent when metrics are off)
GAUGES = (("tracker_watch_swarms", "Swarms joined"), ("tracker_watch_peers_connected", "Peer connections"),
          ("tracker_watch_ingest_pending", "Observations waiting to be written"),
          ("tracker_watch_spool_bytes", "Spool: bytes not yet in the database"),
          ("tracker_watch_spool_limit_bytes", "Spool limit (bytes)"),
          ("tracker_watch_payload_uploaded_bytes_total", "Payload uploaded (must stay 0)"),
          ("tracker_watch_alerts_dropped_total", "libtorrent alerts dropped"))
NODES = """
    SELECT n.name, n.version, n.max_targets, n.started_at, n.heartbeat_at, n.stopped_at, n.drained_at,
           n.stopped_at IS NULL AND n.heartbeat_at > now() - $1 * interval '1 second' AS alive,
           (SELECT count(*) FROM target_leases l WHERE l.node = n.name AND l.expires_at > now()) AS leases
    FROM nodes n ORDER BY n.name
"""
LEASES = """
    SELECT l.target_id, l.node, l.expires_at, l.acquired_at, l.expires_at > now() AS live, w.title, h.name AS holder
    FROM target_leases l JOIN targets t ON t.id = l.target_id JOIN works w ON w.id = t.work_id
    JOIN rights_holders h ON h.id = w.holder_id ORDER BY l.node, l.target_id LIMIT 500
"""


def _gauges() -> list[tuple[str, float | None]]:
    return [(label, REGISTRY.get_sample_value(name)) for name, label in GAUGES]


async def ops_page(request: web.Request) -> web.Response:
    require(request, "operator")
    pool = db(request)
    engine = request.app.get(ENGINE)
    counts: dict[str, Any] = {
        "targets": await pool.fetch("SELECT status AS k, count(*) AS n FROM targets GROUP BY 1 ORDER BY 1"),
        "strikes": await pool.fetch("SELECT status AS k, count(*) AS n FROM strikes GROUP BY 1 ORDER BY 1"),
        "notices": await pool.fetch("SELECT state AS k, count(*) AS n FROM notices GROUP BY 1 ORDER BY 1"),
    }
    return render(request, "ops.html", {
        "nodes": await pool.fetch(NODES, request.app[SETTINGS].node.lease_ttl_s),
        "leases": await pool.fetch(LEASES), "gauges": _gauges(), "counts": counts,
        "engine": None if engine is None else {"running": engine.session is not None, "swarms": len(engine.swarms)},
        "node": request.app[SETTINGS].node.name})


async def tokens_page(request: web.Request, created: dict[str, Any] | None = None) -> web.Response:
    require(request, "operator")
    rows = await db(request).fetch(
        "SELECT t.id, t.name, t.role, t.isp, h.name AS holder, t.created_at, t.created_by, t.revoked_at "
        "FROM api_tokens t LEFT JOIN rights_holders h ON h.id = t.holder_id ORDER BY t.id")
    return render(request, "tokens.html", {"tokens": rows, "created": created})


async def create(request: web.Request) -> web.Response:
    me = require(request, "operator")
    form = await request.post()
    role, name = str(form.get("role") or ""), str(form.get("name") or "").strip()
    if role not in ("rightsholder", "isp", "operator"):
        raise ConsoleError(400, "role: choose rights holder, ISP or operator")
    if not 1 <= len(name) <= 200:
        raise ConsoleError(400, "name: give the rights holder's, ISP's or person's name (1 to 200 characters)")
    async with db(request).acquire() as conn, conn.transaction():
        token_id, token = await create_token(conn, role, name, me.actor)
    # shown on this response only: it is not stored anywhere but as its hash
    return await tokens_page(request, {"id": token_id, "name": name, "role": role, "token": token})


async def revoke(request: web.Request) -> web.StreamResponse:
    me = require(request, "operator")
    text = request.match_info["id"]
    token_id = int(text) if text.isdigit() and int(text) <= 2**62 else 0
    async with db(request).acquire() as conn, conn.transaction():
        done = await conn.fetchval("UPDATE api_tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL "
                                   "RETURNING id", token_id)
        if done is None:
            raise ConsoleError(404, f"there is no active token {text[:40]!r}")
        await audit(conn, me, "token.revoke", f"token:{token_id}")
    flash(request, f"Token {token_id} revoked: it is refused from its next request on.")
    raise redirect("/console/tokens")


async def audit_page(request: web.Request) -> web.Response:
    require(request, "operator")
    before_text = request.query.get("before", "")
    before = int(before_text) if before_text.isdigit() and int(before_text) <= 2**62 else None
    action = request.query.get("action") or None
    rows = await queries.audit(db(request), before, action)
    actions = [r["action"] for r in await db(request).fetch(
        "SELECT DISTINCT action FROM audit_log ORDER BY action")]
    return render(request, "audit.html", {"rows": rows, "actions": actions, "action": action,
                                          "next": rows[-1]["id"] if len(rows) == 200 else None})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/ops", ops_page)
    app.router.add_get("/tokens", tokens_page)
    app.router.add_post("/tokens", create)
    app.router.add_post("/tokens/{id}/revoke", revoke)
    app.router.add_get("/audit", audit_page)
