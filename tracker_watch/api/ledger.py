"""Strikes and notices (rights holders: those about their works; ISPs: notices addressed to them), and the
operator's actions: voiding strikes, managing tokens."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tracker_watch import log
from tracker_watch.api import schemas as s
from tracker_watch.api.auth import create_token
from tracker_watch.api.common import audit, json_body, principal, reply, require
from tracker_watch.api.errors import Problem, not_found
from tracker_watch.api.keys import ENGINE, POOL, SETTINGS, db
from tracker_watch.api.params import ID_CURSOR, id_cursor, path_id, query_choice, query_id_cursor, query_int
from tracker_watch.api.registry import Param, path_param, route
from tracker_watch.domain.policy import LEVEL_NAMES
from tracker_watch.ledger.notice_render import ensure_rendered
from tracker_watch.ledger.strikes import StrikeLedger

JSON = "application/json"
_log = log.get("tracker_watch.api")
_STRIKES = """
    SELECT s.id, s.level, s.status, s.issued_at, s.cycle_start, s.reason, s.subject_id, sub.kind, sub.isp,
           sub.subscriber_ref, host(sub.ip) AS ip, w.id AS work_id, w.title, n.id AS notice_id, n.state AS notice_state
    FROM strikes s JOIN subjects sub ON sub.id = s.subject_id JOIN works w ON w.id = s.work_id
    LEFT JOIN notices n ON n.strike_id = s.id AND n.kind = 'notice'
    WHERE ($1::bigint IS NULL OR w.holder_id = $1)
"""
_NOTICES = """
    SELECT n.id, n.strike_id, n.isp, s.level, n.state, n.attempts, n.last_error, n.delivered_at, n.created_at, n.xml,
           n.json, n.kind, n.withdraws
    FROM notices n JOIN strikes s ON s.id = n.strike_id JOIN works w ON w.id = s.work_id
    WHERE ($1::bigint IS NULL OR w.holder_id = $1) AND ($2::text IS NULL OR n.isp = $2)
"""
NOTICE_FORMAT = Param("format", "query", {"enum": ["json", "xml"]}, "meta (default), or the notice as sent")


def _strike_json(r: Any) -> dict[str, Any]:
    return {"id": r["id"], "level": r["level"], "level_name": LEVEL_NAMES[r["level"]], "status": r["status"],
            "issued_at": r["issued_at"], "cycle_start": r["cycle_start"], "reason": r["reason"],
            "subject": {"id": r["subject_id"], "kind": r["kind"], "isp": r["isp"],
                        "subscriber_ref": r["subscriber_ref"], "ip": r["ip"]},
            "work": {"id": r["work_id"], "title": r["title"]},
            "notice": {"id": r["notice_id"], "state": r["notice_state"]} if r["notice_id"] else None}


@route("GET", "/api/v1/strikes", "Strikes, newest first", roles=("rightsholder", "operator"), tag="ledger",
       params=(Param("subject", "query", s.ID, "subject id"),
               Param("status", "query", {"enum": ["active", "voided", "superseded"]}),
               Param("cursor", "query", ID_CURSOR)),
       responses={200: (JSON, s.page(s.STRIKE, ID_CURSOR), "a page of strikes")})
async def list_strikes(request: web.Request) -> web.Response:
    who = require(request, "rightsholder", "operator")
    subject, status = query_int(request, "subject"), query_choice(request, "status", ["active", "voided", "superseded"])
    before = query_id_cursor(request) or 2**62
    rows = await db(request).fetch(
        _STRIKES + " AND ($2::bigint IS NULL OR s.subject_id = $2) AND ($3::text IS NULL OR s.status = $3) "
        "AND s.id < $4 ORDER BY s.id DESC LIMIT 201", who.holder_id, subject, status, before)
    more = len(rows) > 200
    rows = rows[:200]
    return reply({"items": [_strike_json(r) for r in rows], "next_cursor": id_cursor(rows[-1]["id"]) if more
                  else None})


@route("GET", "/api/v1/strikes/{id}", "A strike", roles=("rightsholder", "operator"), tag="ledger",
       params=(path_param("id", "strike id"),), responses={200: (JSON, s.STRIKE, "the strike")})
async def get_strike(request: web.Request) -> web.Response:
    who = require(request, "rightsholder", "operator")
    strike_id = path_id(request)
    row = await db(request).fetchrow(_STRIKES + " AND s.id = $2", who.holder_id, strike_id)
    if row is None:
        raise not_found(f"strike {strike_id}")
    return reply(_strike_json(row))


@route("POST", "/api/v1/strikes/{id}/void", "Void a strike (dispute upheld); what follows is re-derived",
       roles=("operator",), tag="ledger", params=(path_param("id", "strike id"),), body=s.VOID,
       responses={200: (JSON, s.VOID_RESULT, "voided")})
async def void_strike(request: web.Request) -> web.Response:
    who = require(request, "operator")
    strike_id = path_id(request)
    doc = await json_body(request, s.VOID)
    result = await StrikeLedger(db(request), request.app[SETTINGS]).void(strike_id, who.actor,
                                                                                   doc["reason"].strip())
    if result is None:
        raise not_found(f"active strike {strike_id}")
    return reply({"voided": strike_id, "created": result.created, "superseded": result.superseded,
                  "withdrawals": result.withdrawals})


def _notice_scope(request: web.Request) -> tuple[int | None, str | None]:
    who = principal(request)
    return who.holder_id, who.isp


@route("GET", "/api/v1/notices", "Notices and their delivery state (ISPs: those addressed to them)", tag="ledger",
       params=(Param("state", "query", {"enum": ["pending", "delivered", "failed", "held", "cancelled"]}),
               Param("cursor", "query", ID_CURSOR)),
       responses={200: (JSON, s.page(s.NOTICE, ID_CURSOR), "a page of notices")})
async def list_notices(request: web.Request) -> web.Response:
    holder, isp = _notice_scope(request)
    state = query_choice(request, "state", ["pending", "delivered", "failed", "held", "cancelled"])
    before = query_id_cursor(request) or 2**62
    rows = await db(request).fetch(
        _NOTICES + " AND ($3::text IS NULL OR n.state = $3) AND n.id < $4 ORDER BY n.id DESC LIMIT 201",
        holder, isp, state, before)
    more = len(rows) > 200
    rows = rows[:200]
    return reply({"items": [{k: r[k] for k in s.NOTICE["properties"]} for r in rows],
                  "next_cursor": id_cursor(rows[-1]["id"]) if more else None})


@route("GET", "/api/v1/notices/{id}", "A notice: its delivery state, or (format=xml|json) the notice as sent",
       tag="ledger", params=(path_param("id", "notice id"), NOTICE_FORMAT),
       responses={200: {JSON: ({"oneOf": [s.NOTICE, s.NOTICE_DOCUMENT]},
                                "the notice's state; with format=json the JSON notice as sent"),
                        "application/xml": ({"type": "string"}, "with format=xml: the ACNS 2.0 notice as sent")}})
async def get_notice(request: web.Request) -> web.Response:
    holder, isp = _notice_scope(request)
    notice_id = path_id(request)
    fmt = query_choice(request, "format", ["json", "xml"])
    if fmt is not None:  # the body as sent, or as it will be: rendered on first need (ledger/notice_render.py)
        await ensure_rendered(request.config_dict[POOL], request.app[SETTINGS], [notice_id])
    # a body just rendered is on the primary; a replica may not have replayed it yet
    pool = request.config_dict[POOL] if fmt is not None else db(request)
    row = await pool.fetchrow(_NOTICES + " AND n.id = $3", holder, isp, notice_id)
    if row is None:
        raise not_found(f"notice {notice_id}")
    if fmt == "xml":
        return web.Response(text=row["xml"], content_type="application/xml")
    if fmt == "json":
        return web.Response(text=row["json"], content_type="application/json")
    return reply({k: row[k] for k in s.NOTICE["properties"]})


@route("POST", "/api/v1/tokens", "Create an API token (shown once)", roles=("operator",), tag="admin",
       body=s.TOKEN_CREATE, responses={201: (JSON, s.TOKEN_CREATED, "the token; store it now")})
async def create_api_token(request: web.Request) -> web.Response:
    who = require(request, "operator")
    doc = await json_body(request, s.TOKEN_CREATE)
    async with db(request).acquire() as conn, conn.transaction():
        token_id, token = await create_token(conn, doc["role"], doc["name"].strip(), who.actor)
        row = await conn.fetchrow("SELECT id, name, role, created_at, revoked_at FROM api_tokens WHERE id = $1",
                                  token_id)
    return reply({**dict(row), "token": token}, 201)


@route("GET", "/api/v1/tokens", "List API tokens (never the secrets)", roles=("operator",), tag="admin",
       responses={200: (JSON, s.page(s.TOKEN), "tokens")})
async def list_tokens(request: web.Request) -> web.Response:
    require(request, "operator")
    rows = await db(request).fetch("SELECT id, name, role, created_at, revoked_at FROM api_tokens ORDER BY id")
    return reply({"items": [dict(r) for r in rows], "next_cursor": None})


@route("DELETE", "/api/v1/tokens/{id}", "Revoke a token: refused from its next request on", roles=("operator",),
       tag="admin", params=(path_param("id", "token id"),), responses={204: (JSON, None, "revoked")})
async def revoke_token(request: web.Request) -> web.Response:
    who = require(request, "operator")
    token_id = path_id(request)
    async with db(request).acquire() as conn, conn.transaction():
        done = await conn.fetchval("UPDATE api_tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL "
                                   "RETURNING id", token_id)
        if done is None:
            raise not_found(f"active token {token_id}")
        await audit(conn, who, "token.revoke", f"token:{token_id}")
    return web.Response(status=204)


@route("GET", "/healthz", "Liveness: the process answers", roles=None, tag="health",
       responses={200: (JSON, s.HEALTH, "alive")})
async def healthz(request: web.Request) -> web.Response:
    return reply({"status": "ok"})


@route("GET", "/readyz", "Readiness: database reachable and swarm engine running", roles=None, tag="health",
       responses={200: (JSON, s.HEALTH, "ready"), 503: ("application/problem+json", s.PROBLEM, "not ready")})
async def readyz(request: web.Request) -> web.Response:
    """Anyone may ask, so the answer is only ready or not; why not goes to the log."""
    reason = None
    try:
        await db(request).fetchval("SELECT 1")
    except Exception as exc:
        reason = f"database unreachable: {type(exc).__name__}"
    engine = request.app.get(ENGINE)
    if reason is None and engine is not None and engine.session is None:
        reason = "swarm engine not running"
    if reason is not None:
        _log.warning("api_not_ready", reason=reason)
        raise Problem(503, "not ready")
    return reply({"status": "ready"})
