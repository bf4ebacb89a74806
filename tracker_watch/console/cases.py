"""Strikes (a timeline per subject), notices (delivery state, evidence summary, the ACNS XML, the ISP's
acknowledgement) and search. Rights holders see those of their own works, ISPs the notices addressed to
them, operators everything — and may void a strike."""

from __future__ import annotations

import ipaddress
import json
from datetime import UTC, datetime
from itertools import groupby
from typing import Any
from xml.dom import minidom

from aiohttp import web

from tracker_watch.api.keys import POOL, SETTINGS, db
from tracker_watch.console import queries
from tracker_watch.console.core import ConsoleError, flash, not_visible, redirect, render, require, who
from tracker_watch.domain.policy import LEVEL_NAMES
from tracker_watch.ledger.notice_render import ensure_rendered
from tracker_watch.ledger.strikes import StrikeLedger

STATES = ["pending", "delivered", "failed", "held", "cancelled"]


def _id(request: web.Request, what: str) -> int:
    text = request.match_info["id"]
    if not text.isdigit() or not 1 <= int(text) <= 2**62:
        raise not_visible(f"{what} {text[:40]!r}")
    return int(text)


async def strikes_page(request: web.Request) -> web.Response:
    me = require(request, "rightsholder", "operator")
    work_text = request.query.get("work", "")
    work = int(work_text) if work_text.isdigit() and int(work_text) <= 2**62 else None
    rows = await queries.strikes(db(request), me.holder_id, work=work)
    subjects = [(key, list(group)) for key, group in groupby(rows, key=lambda r: r["subject_id"])]
    return render(request, "strikes.html", {"subjects": subjects, "levels": LEVEL_NAMES,
                                            "work": rows[0]["title"] if work and rows else None})


async def void(request: web.Request) -> web.StreamResponse:
    me = require(request, "operator")
    strike_id = _id(request, "strike")
    reason = str((await request.post()).get("reason") or "").strip()
    if not reason:
        raise ConsoleError(400, "give a reason for voiding the strike (it goes into the audit log)")
    if len(reason) > 2000:
        raise ConsoleError(400, "the reason is longer than 2,000 characters")
    result = await StrikeLedger(db(request), request.app[SETTINGS]).void(strike_id, me.actor, reason)
    if result is None:
        raise ConsoleError(404, f"strike {strike_id} is not an active strike (already voided or superseded?)")
    flash(request, f"Strike {strike_id} voided; the ledger was re-derived ({result[0]} strike(s) created, "
                   f"{result[1]} superseded).")
    raise redirect("/console/strikes")


def _day(request: web.Request, name: str) -> datetime | None:
    text = request.query.get(name, "").strip()
    if not text:
        return None
    try:
        return datetime.fromisoformat(text).replace(tzinfo=UTC)
    except ValueError:
        raise ConsoleError(400, f"{name}: {text[:40]!r} is not a date (YYYY-MM-DD)") from None


async def notices_page(request: web.Request) -> web.Response:
    me = who(request)
    state = request.query.get("state") or None
    if state is not None and state not in STATES:
        raise ConsoleError(400, f"state: choose one of {', '.join(STATES)}")
    since, until = _day(request, "from"), _day(request, "to")
    if until is not None:
        until = until.replace(hour=23, minute=59, second=59, microsecond=999_999)
    rows = await queries.notices(db(request), me.holder_id, me.isp, state, since, until)
    return render(request, "notices.html", {"notices": rows, "states": STATES, "state": state,
                                            "from": request.query.get("from", ""), "to": request.query.get("to", ""),
                                            "levels": LEVEL_NAMES})


async def _visible_notice(request: web.Request) -> Any:
    me = who(request)
    notice_id = _id(request, "notice")
    # bodies render on first need, on the primary: read it there too (a replica may lag)
    await ensure_rendered(request.config_dict[POOL], request.app[SETTINGS], [notice_id])
    row = await queries.notice(request.config_dict[POOL], me.holder_id, me.isp, notice_id)
    if row is None:
        raise not_visible(f"notice {notice_id}")
    return row


async def notice_page(request: web.Request) -> web.Response:
    row = await _visible_notice(request)
    try:
        pretty = minidom.parseString(row["xml"]).toprettyxml(indent="  ").split("\n", 1)[1].rstrip()
    except Exception:  # shown as stored if it does not parse (it always should)
        pretty = row["xml"]
    doc = json.loads(row["json"])
    return render(request, "notice.html", {"n": row, "xml": pretty, "doc": doc, "levels": LEVEL_NAMES,
                                           "acks": await queries.acknowledgements(db(request), row["id"])})


async def notice_xml(request: web.Request) -> web.Response:
    row = await _visible_notice(request)
    return web.Response(text=row["xml"], content_type="application/xml",
                        headers={"Content-Disposition": f'attachment; filename="notice-{row["id"]}.xml"'})


async def acknowledge(request: web.Request) -> web.StreamResponse:
    me = require(request, "isp")
    row = await _visible_notice(request)
    note = str((await request.post()).get("note") or "").strip()[:2000]
    done = await queries.acknowledge(db(request), row["id"], me.actor, me.isp or "", note)
    flash(request, f"Notice {row['id']} acknowledged." if done else f"Notice {row['id']} was already acknowledged.")
    raise redirect(f"/console/notices/{row['id']}")


async def search_page(request: web.Request) -> web.Response:
    me = require(request, "rightsholder", "operator")
    q = request.query.get("q", "").strip()[:2000]
    ip = infohash = None
    if q:
        try:
            ip = str(ipaddress.ip_address(q))
        except ValueError:
            infohash = _infohash(q)
    results = await queries.search(db(request), me.holder_id, q, ip, infohash) if q else None
    kind = "IP address" if ip else "infohash" if infohash else "work title"
    return render(request, "search.html", {"q": q, "results": results, "kind": kind, "levels": LEVEL_NAMES})


def _infohash(text: str) -> bytes | None:
    """A v1 or v2 hex infohash, or a magnet link's, as bytes; None if the text is neither."""
    from tracker_watch.domain.targets import TargetParseError, parse_target

    if len(text) not in (40, 64) and not text.startswith("magnet:"):
        return None
    try:
        spec = parse_target(text)
    except TargetParseError:
        return None
    return spec.infohash_v1 or spec.infohash_v2


def add_routes(app: web.Application) -> None:
    app.router.add_get("/strikes", strikes_page)
    app.router.add_post("/strikes/{id}/void", void)
    app.router.add_get("/notices", notices_page)
    app.router.add_get("/notices/{id}", notice_page)
    app.router.add_get("/notices/{id}/xml", notice_xml)
    app.router.add_post("/notices/{id}/acknowledge", acknowledge)
    app.router.add_get("/search", search_page)
