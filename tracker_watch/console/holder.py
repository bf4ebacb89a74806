"""Rights holders' pages: works and targets, registering (one, a .torrent upload, or a bulk list), pausing,
resuming and deleting, and each target's live state, detections chart and evidence per peer address.
Operators see every holder's targets here too. Visibility is the API's own rule (api.targets.visible_target)."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from tracker_watch.api.common import audit
from tracker_watch.api.keys import db
from tracker_watch.api.targets import live_status, visible_target
from tracker_watch.console import chart, queries
from tracker_watch.console.bulk import parse_lines
from tracker_watch.console.core import ConsoleError, flash, redirect, render, require
from tracker_watch.domain.targets import TargetParseError, parse_target
from tracker_watch.ledger.bulk import register_many
from tracker_watch.ledger.package import PackageError, SegmentInvalid, Selection, build
from tracker_watch.ledger.targets import TargetStore

RH_OP = ("rightsholder", "operator")
PAGE = 200  # targets per page
GRADE_WORDS = {
    "verified": "It sent us pieces of this work that passed the hash check: it was distributing the work. "
                "This is the grade that counts toward a strike.",
    "advertised": "It told us it has pieces of the work (its bitfield or HAVE messages) but has not yet sent "
                  "one that we checked. A claim alone is not proof.",
    "handshake": "We connected and it completed the BitTorrent handshake for this torrent, but it showed no "
                 "pieces.",
    "listed": "A tracker, the DHT or another peer named this address; it never completed a handshake with us. "
              "This never counts toward a strike.",
    "corrupt": "It sent data that failed the hash check: it is not a genuine source of the work, and nothing it "
               "did counts toward a strike.",
}


def _target_id(request: web.Request) -> int:
    text = request.match_info["id"]
    if not text.isdigit() or not 1 <= int(text) <= 2**62:
        raise ConsoleError(404, f"there is no target {text[:40]!r}")
    return int(text)


async def targets_page(request: web.Request, status: int = 200, **extra: Any) -> web.Response:
    me = require(request, *RH_OP)
    pool = db(request)
    after_text = request.query.get("after", "")
    after = int(after_text) if after_text.isdigit() and int(after_text) <= 2**62 else 0
    rows = [r for r in await TargetStore(pool).page(me.holder_id, None, after, PAGE + 1) if r.status != "deleted"]
    more = rows[PAGE - 1].id if len(rows) > PAGE else None
    rows = rows[:PAGE]
    works = await pool.fetch("SELECT w.id, w.title FROM works w WHERE ($1::bigint IS NULL OR w.holder_id = $1) "
                             "ORDER BY w.title", me.holder_id)
    return render(request, "targets.html", {"targets": rows, "live": await live_status(request, rows),
                                            "works": works, "more": more, "after": after, **extra}, status=status)


async def register_one(request: web.Request) -> web.StreamResponse:
    me = require(request, "rightsholder")
    form = await request.post()
    work = str(form.get("work") or "").strip()
    upload = form.get("torrent")
    try:
        if not work:
            raise TargetParseError("give the work's title")
        if isinstance(upload, web.FileField):
            data = upload.file.read()
            if not data:
                raise TargetParseError("the chosen .torrent file is empty")
            spec = parse_target(data)
        else:
            text = str(form.get("target") or "").strip()
            if not text:
                raise TargetParseError("paste a magnet link or an infohash")
            spec = parse_target(text)
    except TargetParseError as exc:
        return await targets_page(request, single_error=str(exc), one_work=work,
                                  one_target=str(form.get("target") or ""), status=400)
    row, created = await TargetStore(db(request)).register(spec, me.holder or "", work[:500], actor=me.actor)
    what = row.name or row.display_name or row.key
    flash(request, f"Registered target {row.id} ({what}) for “{row.work}”." if created
          else f"Target {row.id} ({what}) was already registered for “{row.work}”.")
    raise redirect(f"/console/targets/{row.id}")


async def register_bulk(request: web.Request) -> web.StreamResponse:
    me = require(request, "rightsholder")
    form = await request.post()
    upload = form.get("list_file")
    text = str(form.get("list") or "")
    if isinstance(upload, web.FileField):
        raw = upload.file.read()
        if raw:
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                return await targets_page(request, bulk_errors=[(0, upload.filename, "the file is not UTF-8 text")],
                                          status=400)
    items, errors = parse_lines(text, str(form.get("work") or "").strip())
    if errors:
        return await targets_page(request, bulk_errors=[(e.line, e.text, e.detail) for e in errors[:1000]],
                                  bulk_total=len(items) + len(errors), bulk_text=text[:200_000],
                                  bulk_work=str(form.get("work") or ""), status=400)
    async with db(request).acquire() as conn, conn.transaction():
        ids, created = await register_many(conn, [(spec, me.holder or "", work) for spec, work in items])
        await audit(conn, me, "target.bulk_register", f"targets:{len(ids)}", created=created, via="console")
    flash(request, f"Registered {created} new target(s) from {len(items)} line(s); {len(ids) - created} were "
                   "already registered.")
    raise redirect("/console/targets")


async def _set_status(request: web.Request, status: str, verb: str) -> web.StreamResponse:
    me = require(request, *RH_OP)
    row = await visible_target(request, _target_id(request))
    await TargetStore(db(request)).set_status(row.id, status, actor=me.actor)
    flash(request, f"Target {row.id} {verb}.")
    raise redirect("/console/targets" if status == "deleted" else f"/console/targets/{row.id}")


async def pause(request: web.Request) -> web.StreamResponse:
    return await _set_status(request, "paused", "paused: it is no longer watched (its evidence stays)")


async def resume(request: web.Request) -> web.StreamResponse:
    return await _set_status(request, "active", "resumed: it is watched again")


async def delete(request: web.Request) -> web.StreamResponse:
    return await _set_status(request, "deleted", "deleted: it is no longer watched (its evidence stays)")


async def target_page(request: web.Request) -> web.Response:
    require(request, *RH_OP)
    row = await visible_target(request, _target_id(request))
    pool = db(request)
    now = datetime.now(UTC)
    first = await pool.fetchval("SELECT min(observed_at) FROM observations WHERE target_id = $1", row.id)
    step = chart.bucket_size(first, now)
    count = 48 if step.days == 0 else 30
    origin = datetime.fromtimestamp((now.timestamp() // step.total_seconds() - count + 1) * step.total_seconds(), UTC)
    rows = await pool.fetch(queries.DETECTIONS, row.id, step, origin)
    data = chart.buckets([(r["b"], r["grade"], r["n"]) for r in rows], origin, step, count)
    svg = chart.render(data, step, f"Peer addresses detected per {'hour' if step.days == 0 else 'day'}, by grade")
    recent = {r["grade"]: r["n"] for r in await pool.fetch(queries.RECENT_BY_GRADE, row.id, timedelta(minutes=15))}
    peers = await pool.fetch(queries.PEERS, row.id)
    return render(request, "target.html", {
        "t": row, "live": (await live_status(request, [row]))[row.id], "chart": svg, "recent": recent,
        "peers": peers, "grade_words": GRADE_WORDS, "grades": chart.GRADES,
        "per": "hour" if step.days == 0 else "day"})


async def evidence_package(request: web.Request) -> web.Response:
    require(request, *RH_OP)
    row = await visible_target(request, _target_id(request))
    try:
        ip = str(ipaddress.ip_address(request.query.get("ip", "")))
    except ValueError:
        raise ConsoleError(400, "name the peer's IP address (?ip=…)") from None
    try:
        async with db(request).acquire() as conn:
            data = await build(conn, Selection(row.id, ip, None, None))
    except SegmentInvalid as exc:
        raise ConsoleError(409, f"the ledger rows this package would carry do not verify: {exc}") from None
    except (PackageError, ValueError) as exc:
        raise ConsoleError(404, f"no evidence package for {ip[:60]!r} in target {row.id}: {exc}") from None
    name = f"evidence-{row.id}-{ip.replace(':', '_')}.zip"
    return web.Response(body=data, content_type="application/zip",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/targets", targets_page)
    app.router.add_post("/targets", register_one)
    app.router.add_post("/targets/bulk", register_bulk)
    app.router.add_get("/targets/{id}", target_page)
    app.router.add_post("/targets/{id}/pause", pause)
    app.router.add_post("/targets/{id}/resume", resume)
    app.router.add_post("/targets/{id}/delete", delete)
    app.router.add_get("/targets/{id}/evidence", evidence_package)

