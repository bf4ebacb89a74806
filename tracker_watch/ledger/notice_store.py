"""Creating a strike's notice from the ledger and queueing it; its ACNS XML and JSON are rendered when first
needed (ledger/notice_render.py), at delivery or when read.

A notice goes to the subject's ISP. It is `pending` when that ISP has a webhook or a drop folder, else
`held` with the reason (an unattributed address has no known ISP; an ISP may have no delivery set up).
The idempotency key is derived from the strike, and strikes are unique per subject, cycle and level,
so a notice can never be created or delivered twice for one strike.

When a strike stops standing, its notice is cancelled if it never left; if it was delivered — or a
delivery was attempted, so the ISP may hold it even though we saw an error — the ISP is also sent a
withdrawal (domain/withdrawals.py), at most one per notice.
"""

from __future__ import annotations

import json
from typing import Any

from tracker_watch.config import Settings
from tracker_watch.domain import withdrawals
from tracker_watch.domain.evidence import utc_now_ms
from tracker_watch.ledger.db import Conn
from tracker_watch.ledger.notice_render import evidence_cut, render_notices

_STRIKE = """
    SELECT s.id, sub.kind, sub.isp, i.webhook_url, i.drop_dir
    FROM strikes s JOIN subjects sub ON sub.id = s.subject_id LEFT JOIN isps i ON i.name = sub.isp
    WHERE s.id = ANY($1::bigint[])
"""
# bare: the body is rendered when first needed (ledger/notice_render.py), from the evidence cut stored here
_INSERT = """
    INSERT INTO notices (strike_id, isp, idempotency_key, state, last_error, evidence_upto)
    SELECT s, i, k, st, e, $6::jsonb FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[])
         AS u(s, i, k, st, e)
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
    """Notices for these strikes, in a fixed number of statements however many there are; their bodies are
    rendered at delivery (or when read), see ledger/notice_render.py."""
    if not strike_ids:
        return []
    rows = [(s["id"], s["isp"], idempotency_key(s["id"]), *_state(s)) for s in await conn.fetch(_STRIKE, strike_ids)]
    if not rows:
        return []
    columns = [list(column) for column in zip(*rows, strict=True)]
    return [r["id"] for r in await conn.fetch(_INSERT, *columns, await evidence_cut(conn))]


def _state(strike: Any) -> tuple[str, str | None]:
    if strike["kind"] != "subscriber":
        return "held", "the address is not covered by any ISP's lease data, so no ISP can be notified"
    if not (strike["webhook_url"] or strike["drop_dir"]):
        return "held", f"no delivery (webhook or drop folder) is configured for ISP {strike['isp']}"
    return "pending", None


async def retire_notices(conn: Conn, settings: Settings, strike_ids: list[int], cause: str) -> list[int]:
    """The strikes stopped standing: cancel their notices that never left, withdraw those that may have.
    Returns the ids of the withdrawals queued. `cause` is a key of withdrawals.REASONS."""
    if not strike_ids:
        return []
    rows = await conn.fetch(_RETIRING, strike_ids)
    # a notice that left was rendered on its way out; render any other the ISP may hold, to quote it
    sent = [r["id"] for r in rows if r["xml"] is None and (r["state"] == "delivered" or r["attempts"])]
    if await render_notices(conn, settings.notices, settings.evidence.incident_window_s, sent):
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
