"""Works and targets: register (hex, magnet, .torrent upload, or 10,000 at once), list, get, pause, delete.

A rights holder's token sees only its own works and targets: another's are answered 404, exactly as if
they did not exist.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from aiohttp import web

from tracker_watch.api import schemas as s
from tracker_watch.api.auth import Principal
from tracker_watch.api.bulk import read_bulk, resolve_works, work_key
from tracker_watch.api.common import (
    audit,
    bad_text,
    json_body,
    principal,
    reply,
    require,
    require_json,
    validate,
)
from tracker_watch.api.errors import Problem, not_found
from tracker_watch.api.keys import ENGINE, WATCHLIST, db
from tracker_watch.api.params import (
    ID_CURSOR,
    id_cursor,
    path_id,
    query_choice,
    query_id_cursor,
    query_int,
)
from tracker_watch.api.registry import Param, path_param, route
from tracker_watch.api.specs import spec_of
from tracker_watch.ledger.bulk import register_many
from tracker_watch.ledger.targets import TargetRow, TargetStore

JSON = "application/json"
RH_OP = ("rightsholder", "operator")
TARGET_REPLY = {201: (JSON, s.TARGET, "registered"), 200: (JSON, s.TARGET, "already registered for this work")}


async def resolve_work(pool: Any, who: Principal, item: dict[str, Any]) -> tuple[str, str]:
    """(holder name, work title) the target goes to; a rights holder can only name its own works."""
    if who.role == "rightsholder":
        holder = who.holder or ""
        if item.get("holder") not in (None, holder):
            raise Problem(403, "a rights holder token registers targets for its own works only")
    else:
        holder = item.get("holder", "")
    if "work_id" in item:
        row = await pool.fetchrow("SELECT w.title, h.name FROM works w JOIN rights_holders h ON h.id = w.holder_id "
                                  "WHERE w.id = $1 AND ($2::bigint IS NULL OR h.id = $2)", int(item["work_id"]),
                                  who.holder_id)
        if row is None:
            raise not_found(f"work {item['work_id']}")
        return row["name"], row["title"]
    if not item.get("work"):
        raise Problem(400, "give work (a title) or work_id")
    if not holder:
        raise Problem(400, "holder: an operator must name the rights holder")
    return holder, item["work"].strip()


def target_json(row: TargetRow, live: dict[int, Any]) -> dict[str, Any]:
    return {"id": row.id, "work_id": row.work_id, "work": row.work, "holder": row.holder,
            "infohash_v1": row.infohash_v1, "infohash_v2": row.infohash_v2, "registered_as": row.input_kind,
            "display_name": row.display_name, "trackers": list(row.trackers), "status": row.status,
            "peer_hints": list(row.peer_hints), "error": row.error,
            "metadata": {"name": row.name, "total_size": row.total_size, "num_pieces": row.num_pieces}
            if row.name is not None and row.total_size is not None and row.num_pieces is not None else None,
            "live": live.get(row.id, {"watched": False, "peers_connected": 0, "last_seen": None}),
            "created_at": row.created_at}


async def live_status(request: web.Request, rows: list[TargetRow]) -> dict[int, Any]:
    """Peers connected now (from the running swarm engine, if this process has one) and when last seen."""
    seen = {r["target_id"]: r["last"] for r in await db(request).fetch(
        "SELECT target_id, max(observed_at) AS last FROM observations WHERE target_id = ANY($1::bigint[]) "
        "GROUP BY target_id", [r.id for r in rows])}
    engine, watchlist = request.app.get(ENGINE), request.app.get(WATCHLIST)
    out = {}
    for r in rows:
        # this target's own membership, never the swarm's: another holder may watch the same infohash, and
        # its swarm running must not tell this one so
        mine = watchlist is not None and r.status == "active" and r.id in watchlist.rows
        swarm = engine.swarms.get(r.key) if engine is not None and mine else None
        out[r.id] = {"watched": swarm is not None, "peers_connected": len(swarm.connected) if swarm else 0,
                     "last_seen": seen.get(r.id)}
    return out


async def visible_target(request: web.Request, target_id: int) -> TargetRow:
    who = principal(request)
    row = await TargetStore(db(request)).get(target_id)
    if row is None or row.status == "deleted" or (who.holder_id is not None and row.holder_id != who.holder_id):
        raise not_found(f"target {target_id}")
    return row


@route("POST", "/api/v1/targets", "Register a target: hex infohash, magnet, or .torrent (JSON base64 or multipart)",
       roles=RH_OP, body=s.TARGET_CREATE, multipart=s.TARGET_UPLOAD, responses=TARGET_REPLY, tag="targets")
async def create_target(request: web.Request) -> web.Response:
    who = require(request, *RH_OP)
    if request.content_type == "multipart/form-data":
        item = await _multipart_item(request)
    else:
        item = await json_body(request, s.TARGET_CREATE)
    spec = spec_of(item)
    holder, work = await resolve_work(db(request), who, item)
    row, created = await TargetStore(db(request)).register(spec, holder, work, actor=who.actor)
    return reply(target_json(row, await live_status(request, [row])), 201 if created else 200)


async def _multipart_item(request: web.Request) -> dict[str, Any]:
    """The upload as the JSON item it stands for, its text fields checked by the same schema rules."""
    try:
        form = await request.post()
    except web.HTTPRequestEntityTooLarge:
        raise
    except Exception:  # no boundary, broken parts, invalid part headers: the client's body, not our bug
        raise Problem(400, "malformed multipart/form-data body") from None
    fields = {k: v for k, v in form.items() if k != "torrent"}
    if any(not isinstance(v, str) for v in fields.values()):
        raise Problem(400, "only the part named 'torrent' may be a file")
    if bad_text(fields):
        raise Problem(400, "text must be valid Unicode without NUL characters")
    validate(fields, s.UPLOAD_FIELDS)
    upload = form.get("torrent")
    if not isinstance(upload, web.FileField):
        raise Problem(400, "torrent: attach the .torrent file as a file part named 'torrent'")
    item: dict[str, Any] = {"torrent_base64": base64.b64encode(upload.file.read()).decode(), **fields}
    if "work_id" in item:
        item["work_id"] = int(item["work_id"])  # the schema's pattern: 1 to 18 ASCII digits
    return item


@route("POST", "/api/v1/targets/bulk", "Register up to 10,000 targets at once: all or nothing", roles=RH_OP,
       body=s.BULK, responses={201: (JSON, s.BULK_RESULT, "all registered"),
                               422: ("application/problem+json", s.PROBLEM, "nothing registered; see errors")},
       tag="targets")
async def bulk_targets(request: web.Request) -> web.Response:
    who = require(request, *RH_OP)
    require_json(request)
    # parsing and checking 10,000 items takes a CPU-bound moment: off the loop the swarm engine shares
    parsed = await asyncio.to_thread(read_bulk, await request.read())
    works = await resolve_works(db(request), who, {work_key(item) for item, _ in parsed})
    items, errors = [], []
    for i, (item, spec) in enumerate(parsed):
        found = works[work_key(item)]  # the work's problem first, as when items were checked one by one
        if isinstance(found, Problem):
            errors.append({"index": i, "detail": found.detail})
        elif isinstance(spec, Problem):
            errors.append({"index": i, "detail": spec.detail})
        else:
            items.append((spec, *found))
    if errors:
        raise Problem(422, f"{len(errors)} of {len(parsed)} targets are invalid; none was registered",
                      errors=errors[:1000])
    async with db(request).acquire() as conn, conn.transaction():
        ids, created = await register_many(conn, items)
        await audit(conn, who, "target.bulk_register", f"targets:{len(ids)}", created=created)
    return reply({"created": created, "existing": len(ids) - created, "target_ids": ids}, 201)


@route("GET", "/api/v1/targets", "List targets with their live status", roles=RH_OP, tag="targets",
       params=(Param("status", "query", {"enum": ["active", "paused", "error"]}),
               Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 1000}),
               Param("cursor", "query", ID_CURSOR)),
       responses={200: (JSON, s.page(s.TARGET, ID_CURSOR), "a page of targets")})
async def list_targets(request: web.Request) -> web.Response:
    who = require(request, *RH_OP)
    status = query_choice(request, "status", ["active", "paused", "error"])
    limit = query_int(request, "limit", 100, 1, 1000) or 100
    after = query_id_cursor(request) or 0
    rows = [r for r in await TargetStore(db(request)).page(who.holder_id, status, after, limit + 1)
            if r.status != "deleted"]
    more = len(rows) > limit
    rows = rows[:limit]
    live = await live_status(request, rows)
    return reply({"items": [target_json(r, live) for r in rows],
                  "next_cursor": id_cursor(rows[-1].id) if more else None})


TARGET_ID = (path_param("id", "target id"),)


@route("GET", "/api/v1/targets/{id}", "A target with its live status", roles=RH_OP, params=TARGET_ID,
       responses={200: (JSON, s.TARGET, "the target")}, tag="targets")
async def get_target(request: web.Request) -> web.Response:
    require(request, *RH_OP)
    row = await visible_target(request, path_id(request))
    return reply(target_json(row, await live_status(request, [row])))


async def _set_status(request: web.Request, status: str) -> web.Response:
    who = require(request, *RH_OP)
    row = await visible_target(request, path_id(request))
    await TargetStore(db(request)).set_status(row.id, status, actor=who.actor)
    if status == "deleted":
        return web.Response(status=204)
    updated = await visible_target(request, row.id)
    return reply(target_json(updated, await live_status(request, [updated])))


@route("POST", "/api/v1/targets/{id}/pause", "Stop watching a target (its evidence stays)", roles=RH_OP,
       params=TARGET_ID, responses={200: (JSON, s.TARGET, "paused")}, tag="targets")
async def pause_target(request: web.Request) -> web.Response:
    return await _set_status(request, "paused")


@route("POST", "/api/v1/targets/{id}/resume", "Watch a paused target again", roles=RH_OP, params=TARGET_ID,
       responses={200: (JSON, s.TARGET, "active")}, tag="targets")
async def resume_target(request: web.Request) -> web.Response:
    return await _set_status(request, "active")


@route("DELETE", "/api/v1/targets/{id}", "Stop watching a target for good (its evidence stays)", roles=RH_OP,
       params=TARGET_ID, responses={204: (JSON, None, "deleted")}, tag="targets")
async def delete_target(request: web.Request) -> web.Response:
    return await _set_status(request, "deleted")


@route("POST", "/api/v1/works", "Create a work (title)", roles=RH_OP, body=s.WORK_CREATE,
       responses={201: (JSON, s.WORK, "created"), 200: (JSON, s.WORK, "already exists")}, tag="targets")
async def create_work(request: web.Request) -> web.Response:
    who = require(request, *RH_OP)
    doc = await json_body(request, s.WORK_CREATE)
    holder = who.holder if who.role == "rightsholder" else doc.get("holder")
    if who.role == "rightsholder" and doc.get("holder") not in (None, holder):
        raise Problem(403, "a rights holder token creates works for itself only")
    if not holder:
        raise Problem(400, "holder: an operator must name the rights holder")
    async with db(request).acquire() as conn, conn.transaction():
        holder_id = await conn.fetchval("INSERT INTO rights_holders (name) VALUES ($1) ON CONFLICT (name) DO UPDATE "
                                        "SET name = EXCLUDED.name RETURNING id", holder)
        row = await conn.fetchrow("INSERT INTO works (holder_id, title) VALUES ($1, $2) ON CONFLICT DO NOTHING "
                                  "RETURNING id, title, created_at", holder_id, doc["title"].strip())
        created = row is not None
        if row is None:
            row = await conn.fetchrow("SELECT id, title, created_at FROM works WHERE holder_id = $1 AND title = $2",
                                      holder_id, doc["title"].strip())
        else:
            await audit(conn, who, "work.create", f"work:{row['id']}", title=row["title"])
    return reply({"id": row["id"], "title": row["title"], "holder": holder, "created_at": row["created_at"]},
                 201 if created else 200)


@route("GET", "/api/v1/works", "List works", roles=RH_OP, tag="targets",
       responses={200: (JSON, s.page(s.WORK, ID_CURSOR), "works")}, params=(Param("cursor", "query", ID_CURSOR),))
async def list_works(request: web.Request) -> web.Response:
    who = require(request, *RH_OP)
    after = query_id_cursor(request) or 0
    rows = await db(request).fetch(
        "SELECT w.id, w.title, h.name AS holder, w.created_at FROM works w JOIN rights_holders h ON h.id = w.holder_id "
        "WHERE w.id > $1 AND ($2::bigint IS NULL OR h.id = $2) ORDER BY w.id LIMIT 501", after, who.holder_id)
    more = len(rows) > 500
    rows = rows[:500]
    return reply({"items": [dict(r) for r in rows], "next_cursor": id_cursor(rows[-1]["id"]) if more else None})


@route("GET", "/api/v1/works/{id}", "A work", roles=RH_OP, params=(path_param("id", "work id"),),
       responses={200: (JSON, s.WORK, "the work")}, tag="targets")
async def get_work(request: web.Request) -> web.Response:
    who = require(request, *RH_OP)
    work_id = path_id(request)
    row = await db(request).fetchrow(
        "SELECT w.id, w.title, h.name AS holder, w.created_at FROM works w JOIN rights_holders h ON h.id = w.holder_id "
        "WHERE w.id = $1 AND ($2::bigint IS NULL OR h.id = $2)", work_id, who.holder_id)
    if row is None:
        raise not_found(f"work {work_id}")
    return reply(dict(row))
