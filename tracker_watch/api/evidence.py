"""Evidence: observations and incidents (filtered, cursor-paginated) and evidence packages."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tracker_watch.api import schemas as s
from tracker_watch.api.common import reply, require
from tracker_watch.api.errors import Problem
from tracker_watch.api.keys import db
from tracker_watch.api.params import (
    ID_CURSOR,
    IP,
    TIME,
    TIME_CURSOR,
    id_cursor,
    query_choice,
    query_id_cursor,
    query_int,
    query_ip,
    query_time,
    query_time_cursor,
    time_cursor,
)
from tracker_watch.api.registry import ROLES, Param, route
from tracker_watch.api.targets import RH_OP, visible_target
from tracker_watch.ledger import signing
from tracker_watch.ledger.package import PackageError, SegmentInvalid, Selection, build

JSON = "application/json"
TARGET = Param("target", "query", s.ID, "target id")
FILTERS = (TARGET, Param("ip", "query", IP, "peer IP address"), Param("grade", "query", {"enum": s.GRADES}),
           Param("since", "query", TIME), Param("until", "query", TIME),
           Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 1000}))
# rows of the caller's own targets only (operators: all)
_SCOPE = "JOIN targets t ON t.id = {a}.target_id JOIN works w ON w.id = t.work_id WHERE ($1::bigint IS NULL OR " \
         "w.holder_id = $1) AND ($2::bigint IS NULL OR {a}.target_id = $2) AND ($3::inet IS NULL OR {a}.ip = $3)"


async def _filters(request: web.Request) -> tuple[Any, ...]:
    who = require(request, *RH_OP)
    target = query_int(request, "target")
    if target is not None:
        await visible_target(request, target)  # another holder's target: 404, as if it did not exist
    return (who.holder_id, target, query_ip(request),
            query_choice(request, "grade", s.GRADES), query_time(request, "since"), query_time(request, "until"),
            query_int(request, "limit", 100, 1, 1000) or 100)


@route("GET", "/api/v1/observations", "Observations, oldest first", roles=RH_OP, tag="evidence",
       params=(*FILTERS, Param("cursor", "query", TIME_CURSOR)),
       responses={200: (JSON, s.page(s.OBSERVATION, TIME_CURSOR), "a page of observations")})
async def list_observations(request: web.Request) -> web.Response:
    holder, target, ip, grade, since, until, limit = await _filters(request)
    after_t, after_id = query_time_cursor(request) or (None, None)
    rows = await db(request).fetch(
        "SELECT o.* FROM observations o " + _SCOPE.format(a="o") + " AND ($4::text IS NULL OR o.grade = $4) "
        "AND ($5::timestamptz IS NULL OR o.observed_at >= $5) AND ($6::timestamptz IS NULL OR o.observed_at < $6) "
        "AND ($7::timestamptz IS NULL OR (o.observed_at, o.id) > ($7, $8)) ORDER BY o.observed_at, o.id LIMIT $9",
        holder, target, ip, grade, since, until, after_t, after_id, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    items = [{**{k: r[k] for k in s.OBSERVATION["properties"] if k in r and k != "redacted"},
              "redacted": r["redacted_at"] is not None} for r in rows]
    return reply({"items": items, "next_cursor": time_cursor(rows[-1]["observed_at"], rows[-1]["id"])
                  if more else None})


@route("GET", "/api/v1/incidents", "Incidents: one per (target, IP, day)", roles=RH_OP,
       params=(*FILTERS, Param("cursor", "query", ID_CURSOR)), tag="evidence",
       responses={200: (JSON, s.page(s.INCIDENT, ID_CURSOR), "a page of incidents")})
async def list_incidents(request: web.Request) -> web.Response:
    holder, target, ip, grade, since, until, limit = await _filters(request)
    # 'corrupt' is a flag on incidents, the other grades are their best grade
    grade_sql = "AND CASE WHEN $4::text IS NULL THEN true WHEN $4 = 'corrupt' THEN i.corrupt ELSE i.best_grade = $4 END"
    after = query_id_cursor(request) or 0
    rows = await db(request).fetch(
        "SELECT i.* FROM incidents i " + _SCOPE.format(a="i") + f" {grade_sql} "
        "AND ($5::timestamptz IS NULL OR i.last_seen >= $5) AND ($6::timestamptz IS NULL OR i.first_seen < $6) "
        "AND i.id > $7 ORDER BY i.id LIMIT $8",
        holder, target, ip, grade, since, until,
        after, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return reply({"items": [{k: r[k] for k in s.INCIDENT["properties"]} for r in rows],
                  "next_cursor": id_cursor(rows[-1]["id"]) if more else None})


@route("GET", "/api/v1/evidence", "An evidence package (zip) for one peer IP in one target", roles=RH_OP,
       tag="evidence", params=(Param("target", "query", s.ID, "target id", True),
                               Param("ip", "query", IP, "peer IP address", True),
                               Param("since", "query", TIME), Param("until", "query", TIME)),
       responses={200: ("application/zip", {"type": "string", "format": "binary"}, "the package; verify.py inside"),
                  409: ("application/problem+json", s.PROBLEM, "the ledger rows it would carry do not verify")})
async def evidence_package(request: web.Request) -> web.Response:
    require(request, *RH_OP)
    target_id, ip = query_int(request, "target"), query_ip(request)
    if target_id is None or ip is None:
        raise Problem(400, "query parameters target and ip are required")
    await visible_target(request, target_id)
    try:
        async with db(request).acquire() as conn:
            data = await build(conn, Selection(target_id, ip, query_time(request, "since"),
                                               query_time(request, "until")))
    except SegmentInvalid as exc:  # the ledger was tampered with: never hand out a package that fails verify.py
        raise Problem(409, str(exc)) from None
    except PackageError as exc:
        raise Problem(404, str(exc)) from None
    name = f"evidence-{target_id}-{ip.replace(':', '_')}.zip"
    return web.Response(body=data, content_type="application/zip",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})


SIGNING_KEY = s.obj({"node": {"type": "string"}, "key_id": {"type": "string", "pattern": "^[0-9a-f]{16}$"},
                     "fingerprint": {"type": "string", "pattern": "^SHA256(:[0-9a-f]{4}){16}$",
                                     "description": "SHA-256 of the raw key: pin it with verify.py --key"},
                     "public_key": {**s.HEX64, "description": "raw Ed25519 public key"}, "created_at": s.TS})


@route("GET", "/api/v1/signing-keys", "The nodes' checkpoint signing keys and the fingerprints to pin evidence "
       "packages to", tag="evidence", responses={200: (JSON, s.obj({"items": {"type": "array", "items": SIGNING_KEY}}),
                                                       "every key that ever signed a checkpoint")})
async def signing_keys(request: web.Request) -> web.Response:
    require(request, *ROLES)
    rows = await db(request).fetch("SELECT * FROM signing_keys ORDER BY node, created_at")
    return reply({"items": [{"node": r["node"], "key_id": r["key_id"], "public_key": bytes(r["public_key"]).hex(),
                             "fingerprint": signing.fingerprint(bytes(r["public_key"])), "created_at": r["created_at"]}
                            for r in rows]})
