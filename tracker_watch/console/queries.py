"""The console's reads, each scoped as the API scopes them: a rights holder sees only rows of its own works
($1 holder id; NULL for operators), an ISP only notices addressed to it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

STRIKES = """
    SELECT s.id, s.level, s.status, s.issued_at, s.reason, s.changed_by, s.changed_at, s.subject_id, sub.kind,
           sub.isp, sub.subscriber_ref, host(sub.ip) AS ip, w.id AS work_id, w.title, h.name AS holder,
           n.id AS notice_id, n.state AS notice_state
    FROM strikes s JOIN subjects sub ON sub.id = s.subject_id JOIN works w ON w.id = s.work_id
    JOIN rights_holders h ON h.id = w.holder_id LEFT JOIN notices n ON n.strike_id = s.id
    WHERE ($1::bigint IS NULL OR w.holder_id = $1)
"""
NOTICES = """
    SELECT n.id, n.strike_id, n.isp, s.level, s.status AS strike_status, n.state, n.attempts, n.last_error,
           n.delivered_at, n.created_at, w.title, h.name AS holder, sub.subscriber_ref, host(sub.ip) AS ip,
           (SELECT a.at FROM audit_log a WHERE a.action = 'notice.acknowledge' AND a.object = 'notice:' || n.id
            ORDER BY a.id LIMIT 1) AS acknowledged_at
    FROM notices n JOIN strikes s ON s.id = n.strike_id JOIN works w ON w.id = s.work_id
    JOIN rights_holders h ON h.id = w.holder_id JOIN subjects sub ON sub.id = s.subject_id
    WHERE ($1::bigint IS NULL OR w.holder_id = $1) AND ($2::text IS NULL OR n.isp = $2)
"""
# one row per (peer IP), its best grade (corrupt if it ever lied), ports, pieces and when seen
PEERS = """
    SELECT host(o.ip) AS ip, array_agg(DISTINCT o.port ORDER BY o.port) AS ports,
           CASE WHEN bool_or(o.grade = 'corrupt') THEN 'corrupt'
                ELSE (array_agg(o.grade ORDER BY grade_rank(o.grade) DESC))[1] END AS grade,
           (array_agg(o.client ORDER BY o.observed_at DESC) FILTER (WHERE o.client IS NOT NULL))[1] AS client,
           array_agg(DISTINCT o.source) AS sources, max(o.pieces_advertised) AS pieces_advertised,
           max(o.num_pieces) AS num_pieces, count(DISTINCT o.piece_index) AS pieces_verified,
           coalesce(sum(o.piece_bytes), 0) AS bytes_verified, min(o.observed_at) AS first_seen,
           max(o.observed_at) AS last_seen, count(*) AS observations
    FROM observations o WHERE o.target_id = $1 AND o.ip IS NOT NULL
    GROUP BY o.ip ORDER BY grade_rank(CASE WHEN bool_or(o.grade = 'corrupt') THEN 'corrupt'
                ELSE (array_agg(o.grade ORDER BY grade_rank(o.grade) DESC))[1] END) DESC, o.ip
    LIMIT 1000
"""
# distinct peer addresses per time bucket and best grade in that bucket
DETECTIONS = """
    SELECT b, grade, count(*) AS n FROM (
        SELECT date_bin($2::interval, o.observed_at, $3::timestamptz) AS b, o.ip,
               CASE WHEN bool_or(o.grade = 'corrupt') THEN 'corrupt'
                    ELSE (array_agg(o.grade ORDER BY grade_rank(o.grade) DESC))[1] END AS grade
        FROM observations o WHERE o.target_id = $1 AND o.ip IS NOT NULL AND o.observed_at >= $3
        GROUP BY 1, 2) per_peer
    GROUP BY b, grade ORDER BY b
"""
RECENT_BY_GRADE = """
    SELECT grade, count(*) AS n FROM (
        SELECT o.ip, CASE WHEN bool_or(o.grade = 'corrupt') THEN 'corrupt'
                          ELSE (array_agg(o.grade ORDER BY grade_rank(o.grade) DESC))[1] END AS grade
        FROM observations o WHERE o.target_id = $1 AND o.ip IS NOT NULL AND o.observed_at >= now() - $2::interval
        GROUP BY o.ip) p GROUP BY grade
"""


async def strikes(pool: Any, holder_id: int | None, subject: int | None = None, work: int | None = None,
                  limit: int = 500) -> list[Any]:
    rows: list[Any] = await pool.fetch(
        STRIKES + " AND ($2::bigint IS NULL OR s.subject_id = $2) AND ($3::bigint IS NULL OR s.work_id = $3) "
        "ORDER BY s.subject_id, s.issued_at, s.id LIMIT $4", holder_id, subject, work, limit)
    return rows


async def notices(pool: Any, holder_id: int | None, isp: str | None, state: str | None = None,
                  since: datetime | None = None, until: datetime | None = None, limit: int = 500) -> list[Any]:
    rows: list[Any] = await pool.fetch(
        NOTICES + " AND ($3::text IS NULL OR n.state = $3) AND ($4::timestamptz IS NULL OR n.created_at >= $4) "
        "AND ($5::timestamptz IS NULL OR n.created_at < $5) ORDER BY n.id DESC LIMIT $6",
        holder_id, isp, state, since, until, limit)
    return rows


async def notice(pool: Any, holder_id: int | None, isp: str | None, notice_id: int) -> Any:
    return await pool.fetchrow(NOTICES.replace("n.created_at, w.title", "n.created_at, n.xml, n.json, w.title")
                               + " AND n.id = $3", holder_id, isp, notice_id)


async def acknowledgements(pool: Any, notice_id: int) -> list[Any]:
    rows: list[Any] = await pool.fetch(
        "SELECT at, actor, detail FROM audit_log WHERE action = 'notice.acknowledge' AND object = $1 ORDER BY id",
        f"notice:{notice_id}")
    return rows


async def acknowledge(pool: Any, notice_id: int, actor: str, isp: str, note: str) -> bool:
    """Record the ISP's acknowledgement once (a second one changes nothing); True if recorded now."""
    async with pool.acquire() as conn, conn.transaction():
        # one acknowledgement per notice even when two clicks race: serialise on the notice row
        await conn.execute("SELECT 1 FROM notices WHERE id = $1 FOR UPDATE", notice_id)
        done = await conn.fetchval("SELECT EXISTS (SELECT 1 FROM audit_log WHERE action = 'notice.acknowledge' "
                                   "AND object = $1)", f"notice:{notice_id}")
        if done:
            return False
        await conn.execute("INSERT INTO audit_log (actor, action, object, detail) VALUES ($1, 'notice.acknowledge', "
                           "$2, jsonb_build_object('isp', $3::text, 'note', $4::text))",
                           actor, f"notice:{notice_id}", isp, note)
        return True


async def audit(pool: Any, before: int | None, action: str | None, limit: int = 200) -> list[Any]:
    rows: list[Any] = await pool.fetch(
        "SELECT id, at, actor, action, object, detail FROM audit_log WHERE ($1::bigint IS NULL OR id < $1) "
        "AND ($2::text IS NULL OR action = $2) ORDER BY id DESC LIMIT $3", before, action, limit)
    return rows


async def search(pool: Any, holder_id: int | None, text: str, ip: str | None, infohash: bytes | None) -> dict[str, Any]:
    """Targets by infohash (either version, or a prefix of the v1/v2 hex), works by title, peers and strikes by IP."""
    out: dict[str, Any] = {"targets": [], "works": [], "peers": [], "strikes": []}
    scope = "($1::bigint IS NULL OR w.holder_id = $1)"
    if infohash is not None:
        out["targets"] = await pool.fetch(
            "SELECT t.id, t.status, t.name, t.display_name, w.title, h.name AS holder FROM targets t "
            "JOIN works w ON w.id = t.work_id JOIN rights_holders h ON h.id = w.holder_id "
            f"WHERE {scope} AND t.status <> 'deleted' AND (t.infohash_v1 = $2 OR t.infohash_v2 = $2 "
            "OR substr(t.infohash_v2, 1, 20) = $2) ORDER BY t.id LIMIT 100", holder_id, infohash)
    if ip is not None:
        out["peers"] = await pool.fetch(
            "SELECT o.target_id, w.title, count(*) AS observations, max(o.observed_at) AS last_seen "
            "FROM observations o "
            f"JOIN targets t ON t.id = o.target_id JOIN works w ON w.id = t.work_id WHERE {scope} AND o.ip = $2::inet "
            "GROUP BY o.target_id, w.title ORDER BY o.target_id LIMIT 100", holder_id, ip)
        out["strikes"] = await pool.fetch(STRIKES + " AND (sub.ip = $2::inet OR EXISTS (SELECT 1 FROM attributions a "
                                          "WHERE a.subject_id = s.subject_id AND a.ip = $2::inet)) "
                                          "ORDER BY s.issued_at LIMIT 100", holder_id, ip)
    if ip is None and infohash is None and text:
        like = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        out["works"] = await pool.fetch(
            "SELECT w.id, w.title, h.name AS holder, (SELECT count(*) FROM targets t WHERE t.work_id = w.id "
            "AND t.status <> 'deleted') AS targets FROM works w JOIN rights_holders h ON h.id = w.holder_id "
            f"WHERE {scope} AND w.title ILIKE $2 ORDER BY w.title LIMIT 100", holder_id, like)
    return out
