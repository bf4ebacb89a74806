"""Creating a strike's notice from the ledger: gather the facts, render ACNS XML and JSON, queue it.

A notice goes to the subject's ISP. It is `pending` when that ISP has a webhook or a drop folder, else
`held` with the reason (an unattributed address has no known ISP; an ISP may have no delivery set up).
The idempotency key is derived from the strike, and strikes are unique per subject, cycle and level,
so a notice can never be created or delivered twice for one strike.

When a strike stops standing, its notice is cancelled if it never left; if it was delivered — or a
delivery was attempted, so the ISP may hold it even though we saw an error — the ISP is also sent a
withdrawal (domain/withdrawals.py), at most one per notice.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta
from typing import Any

from tracker_watch import SOFTWARE
from tracker_watch.config import Settings
from tracker_watch.domain import chain, notices, withdrawals
from tracker_watch.domain.evidence import utc_now_ms
from tracker_watch.ledger.db import Conn

_STRIKE = """
    SELECT s.id, s.level, s.subject_id, s.work_id, s.issued_at, s.incident_key, sub.kind, sub.isp,
           sub.subscriber_ref, w.title, h.name AS holder, i.abuse_email, i.webhook_url, i.drop_dir
    FROM strikes s JOIN subjects sub ON sub.id = s.subject_id JOIN works w ON w.id = s.work_id
    JOIN rights_holders h ON h.id = w.holder_id LEFT JOIN isps i ON i.name = sub.isp
    WHERE s.id = ANY($1::bigint[])
"""
# the client as any row of the incident for that address and port knew it (a verified row may have come first)
_EVIDENCE = """
    SELECT u.strike_id, a.ip, a.port, a.observed_at, a.target_id, o.id AS observation_id, o.piece_index,
           coalesce(o.client, (SELECT k.client FROM observations k WHERE k.target_id = a.target_id AND k.ip = a.ip
                               AND k.observed_at >= a.window_start AND k.observed_at < a.window_start + $5::interval
                               AND k.port IS NOT DISTINCT FROM a.port AND k.client IS NOT NULL
                               ORDER BY k.observed_at LIMIT 1)) AS client,
           o.piece_bytes, o.node, o.chain_seq, t.name, t.display_name, t.total_size, t.infohash_v1, t.infohash_v2
    FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::timestamptz[]) AS u(strike_id, subject_id, work_id, ws)
    JOIN attributions a ON a.subject_id = u.subject_id AND a.work_id = u.work_id AND a.window_start = u.ws
    JOIN observations o ON o.id = a.observation_id AND o.observed_at = a.observed_at  -- (its day's partition)
    JOIN targets t ON t.id = a.target_id
    ORDER BY u.strike_id, a.observed_at, o.id
"""
_INSERT = """
    INSERT INTO notices (strike_id, isp, idempotency_key, xml, json, state, last_error)
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])
    ON CONFLICT (strike_id) WHERE kind = 'notice' DO NOTHING
    RETURNING id
"""
# the notices of strikes that stop standing, locked: an outbox delivering one right now finishes first
_RETIRING = """
    SELECT n.id, n.strike_id, n.isp, n.state, n.attempts, n.idempotency_key, n.xml, n.json, i.webhook_url, i.drop_dir
    FROM notices n LEFT JOIN isps i ON i.name = n.isp
    WHERE n.strike_id = ANY($1::bigint[]) AND n.kind = 'notice' ORDER BY n.id FOR UPDATE OF n
"""
_INSERT_WITHDRAWALS = """
    INSERT INTO notices (strike_id, isp, idempotency_key, xml, json, state, last_error, kind, withdraws)
    SELECT s, i, k, x, j, st, e, 'withdrawal', w
    FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::bigint[])
         AS u(s, i, k, x, j, st, e, w)
    ON CONFLICT (withdraws) DO NOTHING
    RETURNING id
"""


def idempotency_key(strike_id: int) -> str:
    return f"tracker-watch-strike-{strike_id}"


async def create_notice(conn: Conn, settings: Settings, strike_id: int) -> int | None:
    ids = await create_notices(conn, settings, [strike_id])
    return ids[0] if ids else None


async def create_notices(conn: Conn, settings: Settings, strike_ids: list[int]) -> list[int]:
    """Notices for these strikes, in a fixed number of statements however many there are."""
    if not strike_ids:
        return []
    strikes = await conn.fetch(_STRIKE, strike_ids)
    evidence: dict[int, list[Any]] = {}
    for r in await conn.fetch(_EVIDENCE, [s["id"] for s in strikes], [s["subject_id"] for s in strikes],
                              [s["work_id"] for s in strikes],
                              [datetime.fromisoformat(s["incident_key"].split("/", 1)[1]) for s in strikes],
                              timedelta(seconds=settings.evidence.incident_window_s)):
        evidence.setdefault(r["strike_id"], []).append(r)
    keys = await _signing_keys(conn, {e["node"] for found in evidence.values() for e in found})
    rows: list[tuple[Any, ...]] = []
    for strike in strikes:
        if not (found := evidence.get(strike["id"])):
            continue
        facts = dataclasses.replace(_facts(settings, strike, found), signing_keys=tuple(
            k for k in keys if k[0] in {e["node"] for e in found}))
        state, why = _state(strike)
        rows.append((strike["id"], strike["isp"], idempotency_key(strike["id"]), notices.render_xml(facts).decode(),
                     notices.render_json(facts).decode(), state, why))
    if not rows:
        return []
    return [r["id"] for r in await conn.fetch(_INSERT, *[list(column) for column in zip(*rows, strict=True)])]


async def _signing_keys(conn: Conn, nodes: set[str]) -> list[tuple[str, str]]:
    """(node, fingerprint) of every key these nodes signed checkpoints with: what a reader pins packages to."""
    return [(r["node"], chain.key_fingerprint(bytes(r["public_key"]))) for r in await conn.fetch(
        "SELECT node, public_key FROM signing_keys WHERE node = ANY($1::text[]) ORDER BY node, created_at",
        sorted(nodes))]


def _state(strike: Any) -> tuple[str, str | None]:
    if strike["kind"] != "subscriber":
        return "held", "the address is not covered by any ISP's lease data, so no ISP can be notified"
    if not (strike["webhook_url"] or strike["drop_dir"]):
        return "held", f"no delivery (webhook or drop folder) is configured for ISP {strike['isp']}"
    return "pending", None


def _facts(settings: Settings, strike: Any, evidence: list[Any]) -> notices.NoticeFacts:
    first = evidence[0]
    pieces = {(e["target_id"], e["piece_index"]) for e in evidence if e["piece_index"] is not None}
    n = settings.notices
    return notices.NoticeFacts(
        notice_id=f"TW-{strike['id']:08d}", level=strike["level"], issued_at=utc_now_ms(),
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
        software=SOFTWARE,
        evidence={"strike": strike["id"], "observations": [str(e["observation_id"]) for e in evidence],
                  "chain": [f"{e['node']}:{e['chain_seq']}" for e in evidence]})


async def retire_notices(conn: Conn, strike_ids: list[int], cause: str) -> list[int]:
    """The strikes stopped standing: cancel their notices that never left, withdraw those that may have.
    Returns the ids of the withdrawals queued. `cause` is a key of withdrawals.REASONS."""
    if not strike_ids:
        return []
    rows = await conn.fetch(_RETIRING, strike_ids)
    await conn.execute("UPDATE notices SET state = 'cancelled' WHERE id = ANY($1::bigint[])",
                       [r["id"] for r in rows if r["state"] in ("pending", "held", "failed")])
    now = utc_now_ms()
    out: list[tuple[Any, ...]] = []
    for r in rows:
        if r["state"] != "delivered" and not r["attempts"]:
            continue
        original = json.loads(r["json"])
        reason = withdrawals.REASONS[cause]
        state, why = ("pending", None) if r["webhook_url"] or r["drop_dir"] else (
            "held", f"no delivery (webhook or drop folder) is configured for ISP {r['isp']}")
        out.append((r["strike_id"], r["isp"], f"{r['idempotency_key']}-withdrawal",
                    withdrawals.render_xml(r["xml"].encode(), original, reason, now).decode(),
                    withdrawals.render_json(original, reason, now).decode(), state, why, r["id"]))
    if not out:
        return []
    return [r["id"] for r in await conn.fetch(_INSERT_WITHDRAWALS, *[list(c) for c in zip(*out, strict=True)])]


def notice_json(row: Any) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(row["json"])
    return doc
