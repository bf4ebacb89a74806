"""Rendering a strike's notice (ACNS XML and JSON) when it is first needed, not when the strike is issued.

Issuing 300,000 strikes used to spend 86 % of its time rendering notices, most of which (bare addresses,
ISPs without delivery) are held and never sent. A notice row is now created bare, with the evidence cut it
rests on: per node, the chain position attribution had reached (`evidence_upto`). It is rendered — once,
and stored — when the outbox delivers it or a reader asks for its body. Rendering is a function of the
row alone: the evidence is the strike's attributions at or below the cut (what the ledger knew when it
issued the strike, whatever arrived since), `issued_at` is the row's creation time to the millisecond, and
signing keys are those registered by then. So the body is what rendering at creation would have made, and
two renderers racing on one notice produce the same bytes (the first UPDATE wins). Contacts (the
complainant's settings, the ISP's abuse address) are read when rendering: a notice names who answers now.

While a rebuild re-attributes the chain, the attributions below a cut may be incomplete: such a notice is
not rendered until attribution has passed its cut again (`render_notices` leaves it for later).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from tracker_watch import SOFTWARE
from tracker_watch.config import NoticeSettings, Settings
from tracker_watch.domain import chain, notices
from tracker_watch.ledger.db import Conn

_UNRENDERED = """
    SELECT n.id AS notice_id, n.created_at, n.evidence_upto, s.id, s.level, s.subject_id, s.work_id, s.incident_key,
           sub.isp, sub.subscriber_ref, w.title, h.name AS holder, i.abuse_email
    FROM notices n JOIN strikes s ON s.id = n.strike_id JOIN subjects sub ON sub.id = s.subject_id
    JOIN works w ON w.id = s.work_id JOIN rights_holders h ON h.id = w.holder_id LEFT JOIN isps i ON i.name = sub.isp
    WHERE n.id = ANY($1::bigint[]) AND n.xml IS NULL AND n.kind = 'notice'
    ORDER BY n.id
"""
# the client as any row of the incident for that address and port knew it (a verified row may have come first);
# only attributions of observations at or below the notice's cut (per node) count
_EVIDENCE = """
    SELECT u.strike_id, a.ip, a.port, a.observed_at, a.target_id, o.id AS observation_id, o.piece_index,
           coalesce(o.client, (SELECT k.client FROM observations k WHERE k.target_id = a.target_id AND k.ip = a.ip
                               AND k.observed_at >= a.window_start AND k.observed_at < a.window_start + $5::interval
                               AND k.port IS NOT DISTINCT FROM a.port AND k.client IS NOT NULL
                               ORDER BY k.observed_at LIMIT 1)) AS client,
           o.piece_bytes, o.node, o.chain_seq, t.name, t.display_name, t.total_size, t.infohash_v1, t.infohash_v2
    FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::timestamptz[], $6::jsonb[])
         AS u(strike_id, subject_id, work_id, ws, upto)
    JOIN attributions a ON a.subject_id = u.subject_id AND a.work_id = u.work_id AND a.window_start = u.ws
    JOIN observations o ON o.id = a.observation_id AND o.observed_at = a.observed_at  -- (its day's partition)
    JOIN targets t ON t.id = a.target_id
    WHERE o.chain_seq <= (u.upto ->> o.node)::bigint
    ORDER BY u.strike_id, a.observed_at, o.id
"""
_STORE = """
    UPDATE notices n SET xml = u.x, json = u.j FROM unnest($1::bigint[], $2::text[], $3::text[]) AS u(id, x, j)
    WHERE n.id = u.id AND n.xml IS NULL
"""


async def evidence_cut(conn: Conn) -> str:
    """Per node, the chain position attribution has reached: what a notice created now rests on (jsonb)."""
    return json.dumps({r["node"]: r["seq"] for r in await conn.fetch("SELECT node, seq FROM attribution_progress")})


async def render_notices(conn: Conn, settings: NoticeSettings, window_s: int, notice_ids: list[int]) -> list[int]:
    """Render and store the bodies of those of these notices that have none yet; returns the ids rendered.
    Already rendered notices, withdrawals, and notices whose cut attribution has not reached are left."""
    if not notice_ids:
        return []
    progress = {r["node"]: r["seq"] for r in await conn.fetch("SELECT node, seq FROM attribution_progress")}
    rows = []
    for r in await conn.fetch(_UNRENDERED, notice_ids):
        upto: dict[str, int] = json.loads(r["evidence_upto"])
        if all(progress.get(node, 0) >= seq for node, seq in upto.items()):
            rows.append(r)
    if not rows:
        return []
    evidence: dict[int, list[Any]] = {}
    for e in await conn.fetch(_EVIDENCE, [r["id"] for r in rows], [r["subject_id"] for r in rows],
                              [r["work_id"] for r in rows],
                              [datetime.fromisoformat(r["incident_key"].split("/", 1)[1]) for r in rows],
                              timedelta(seconds=window_s), [r["evidence_upto"] for r in rows]):
        evidence.setdefault(e["strike_id"], []).append(e)
    keys = await _signing_keys(conn, {e["node"] for found in evidence.values() for e in found})
    out: list[tuple[int, str, str]] = []
    for r in rows:
        if not (found := evidence.get(r["id"])):
            continue  # nothing to show (cannot happen for a strike the ledger issued): leave it unrendered
        nodes = {e["node"] for e in found}
        facts = _facts(settings, r, found, tuple((node, fp) for node, fp, at in keys
                                                 if node in nodes and at <= r["created_at"]))
        out.append((r["notice_id"], notices.render_xml(facts).decode(), notices.render_json(facts).decode()))
    if out:
        await conn.execute(_STORE, *[list(c) for c in zip(*out, strict=True)])
    return [o[0] for o in out]


async def ensure_rendered(pool: Any, settings: Settings, notice_ids: list[int]) -> None:
    """Before a reader (API, console, command line) shows these notices' bodies: render those not rendered yet."""
    async with pool.acquire() as conn, conn.transaction():
        await render_notices(conn, settings.notices, settings.evidence.incident_window_s, notice_ids)


async def _signing_keys(conn: Conn, nodes: set[str]) -> list[tuple[str, str, datetime]]:
    """(node, fingerprint, registered) of every key these nodes signed checkpoints with: what a reader pins
    packages to."""
    return [(r["node"], chain.key_fingerprint(bytes(r["public_key"])), r["created_at"]) for r in await conn.fetch(
        "SELECT node, public_key, created_at FROM signing_keys WHERE node = ANY($1::text[]) ORDER BY node, created_at",
        sorted(nodes))]


def _ms(at: datetime) -> datetime:
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


def _facts(n: NoticeSettings, strike: Any, evidence: list[Any],
           signing_keys: tuple[tuple[str, str], ...]) -> notices.NoticeFacts:
    first = evidence[0]
    pieces = {(e["target_id"], e["piece_index"]) for e in evidence if e["piece_index"] is not None}
    return notices.NoticeFacts(
        notice_id=f"TW-{strike['id']:08d}", level=strike["level"], issued_at=_ms(strike["created_at"]),
        complainant=notices.Party(entity=strike["holder"], email=n.complainant_email, contact=n.complainant_contact),
        service_provider=notices.Party(entity=strike["isp"] or "Unknown provider",
                                       email=strike["abuse_email"] or "abuse@unknown.invalid"),
        ip=str(first["ip"]), port=first["port"], seen_at=first["observed_at"], title=strike["title"],
        file_name=first["name"] or first["display_name"] or strike["title"], file_size=first["total_size"] or 0,
        infohash_v1=first["infohash_v1"].hex() if first["infohash_v1"] else None,
        infohash_v2=first["infohash_v2"].hex() if first["infohash_v2"] else None,
        client=first["client"] or next((e["client"] for e in evidence if e["client"]), None),
        subscriber_ref=strike["subscriber_ref"],
        also_seen=((evidence[0]["observed_at"], evidence[-1]["observed_at"]),) if len(evidence) > 1 else (),
        pieces_verified=len(pieces), bytes_verified=sum(e["piece_bytes"] or 0 for e in evidence),
        software=SOFTWARE, signing_keys=signing_keys,
        evidence={"strike": strike["id"], "observations": [str(e["observation_id"]) for e in evidence],
                  "chain": [f"{e['node']}:{e['chain_seq']}" for e in evidence]})
