"""Attribution: each node's evidence chain, from where the last pass stopped, to subjects.

Every observation at or above the minimum grade is attributed to a subject — the ISP subscriber whose
lease covers its address, port and time, else the bare IP — with its country. Positions commit in order
per node, so a pass never skips or repeats a row. (Split from strikes.py, which evaluates the result.)
"""

from __future__ import annotations

import functools
from typing import Any

from tracker_watch.config import Settings
from tracker_watch.domain.jurisdiction import country_of, covered
from tracker_watch.ledger.db import Conn

# one node's batch of chain positions: ($1 node, $2 after, $3 up to and including, $4 minimum grade rank)
_SPAN = """
    SELECT count(*) AS n, max(chain_seq) AS upto FROM (
        SELECT chain_seq FROM observations WHERE node = $1 AND chain_seq > $2 ORDER BY chain_seq LIMIT $3) s
"""
_BATCH = """
    FROM observations o
    LEFT JOIN LATERAL (SELECT id, isp, subscriber_ref FROM isp_leases
                       WHERE prefix >>= o.ip AND ports @> o.port AND valid @> o.observed_at LIMIT 1) l ON true
    WHERE o.node = $1 AND o.chain_seq > $2 AND o.chain_seq <= $3 AND o.ip IS NOT NULL AND grade_rank(o.grade) >= $4
"""
_DISTINCT_KEYS = "SELECT DISTINCT host(o.ip) AS ip, l.isp, l.subscriber_ref" + _BATCH
# window_start as domain/incidents.py computes it: epoch seconds floored to the window. A bare address's subject
# comes in with its country ($9): joining `subjects` instead hashed the whole table for every batch (issue 14)
_INSERT_ATTRIBUTIONS = """
    INSERT INTO attributions (observation_id, subject_id, lease_id, target_id, work_id, ip, port, observed_at,
                              window_start, country, in_jurisdiction)
    SELECT o.id, coalesce(ss.id, CASE WHEN l.id IS NULL THEN c.subject END), l.id, o.target_id, t.work_id, o.ip,
           o.port, o.observed_at,
           to_timestamp(floor(extract(epoch FROM o.observed_at))::bigint / $5 * $5), c.country, c.inside
    """ + _BATCH.replace("WHERE o.node", """
    JOIN targets t ON t.id = o.target_id
    JOIN unnest($6::text[], $7::text[], $8::bool[], $9::bigint[]) AS c(ip, country, inside, subject)
         ON c.ip = host(o.ip)
    LEFT JOIN subjects ss ON l.id IS NOT NULL AND ss.kind = 'subscriber' AND ss.isp = l.isp
                             AND ss.subscriber_ref = l.subscriber_ref
    WHERE o.node""") + """
    ON CONFLICT (observation_id) DO NOTHING
    RETURNING subject_id, in_jurisdiction
"""
# a lie is rare: find the batch's first (by the chain index), and only then the subjects it concerns
# a rebuild attributes into the emptied table it holds locked, its indexes dropped (built once at the end)
_INSERT_BULK = _INSERT_ATTRIBUTIONS.replace("ON CONFLICT (observation_id) DO NOTHING", "")
_LIARS = """
    SELECT DISTINCT target_id, ip FROM observations
    WHERE node = $1 AND chain_seq > $2 AND chain_seq <= $3 AND grade = 'corrupt'
"""
_LIED = """
    SELECT DISTINCT a.subject_id FROM attributions a JOIN unnest($1::bigint[], $2::inet[]) AS u(target_id, ip)
    ON a.target_id = u.target_id AND a.ip = u.ip
"""


# a rebuild's attribution (and a first one of a long chain): emptied and without indexes, built once at the end
REBUILD_BATCH = 50_000
EMPTY_ATTRIBUTIONS = """
    SET LOCAL maintenance_work_mem = '256MB';
    TRUNCATE attributions, attribution_progress;
    ALTER TABLE attributions DROP CONSTRAINT attributions_pkey;
    DROP INDEX attributions_subject;
"""
BACKLOG = """
    SELECT coalesce(sum(h.seq - coalesce(p.seq, 0)), 0) FROM chain_heads h LEFT JOIN attribution_progress p USING (node)
"""
INDEX_ATTRIBUTIONS = """
    ALTER TABLE attributions ADD CONSTRAINT attributions_pkey PRIMARY KEY (observation_id);
    CREATE INDEX attributions_subject ON attributions (subject_id, work_id, window_start)
        INCLUDE (observed_at, in_jurisdiction, target_id, ip);
    ANALYZE attributions;
"""
# after the bulk fill commits (VACUUM cannot run in a transaction): marks the pages all-visible, so the policy
# inputs come from the covering index alone (migration 0016); ~0.7 s at 1M rows
VACUUM_ATTRIBUTIONS = "VACUUM attributions"


# sized for a national programme's addresses: a rebuild looks up every attributed one again, and a cache
# smaller than the working set (100,000 subjects in bench/ledger.py) misses on every call
@functools.lru_cache(maxsize=262144)
def _country(ip: str, test_country: str) -> str | None:
    return country_of(ip, test_country)


async def _subject_ids(conn: Conn, keys: list[tuple[str, str] | str]) -> dict[tuple[str, str] | str, int]:
    """Subject ids for subscriber keys (isp, ref) and bare IPs, created where missing; no row is rewritten."""
    subs = sorted({k for k in keys if isinstance(k, tuple)})
    ips = sorted({k for k in keys if isinstance(k, str)})
    out: dict[tuple[str, str] | str, int] = {}
    for _ in range(2):  # read; insert the missing; read again what a concurrent writer inserted first
        if subs:
            for r in await conn.fetch(
                    "SELECT s.id, s.isp, s.subscriber_ref FROM subjects s JOIN unnest($1::text[], $2::text[]) "
                    "AS u(isp, ref) ON s.kind = 'subscriber' AND s.isp = u.isp AND s.subscriber_ref = u.ref",
                    [k[0] for k in subs], [k[1] for k in subs]):
                out[(r["isp"], r["subscriber_ref"])] = r["id"]
        if ips:
            for r in await conn.fetch("SELECT id, host(ip) AS ip FROM subjects WHERE kind = 'ip' "
                                      "AND ip = ANY($1::text[]::inet[])", ips):
                out[r["ip"]] = r["id"]
        subs = [k for k in subs if k not in out]
        ips = [k for k in ips if k not in out]
        if not subs and not ips:
            return out
        await conn.execute(
            "INSERT INTO subjects (kind, isp, subscriber_ref) SELECT 'subscriber', isp, ref "
            "FROM unnest($1::text[], $2::text[]) AS u(isp, ref) ON CONFLICT DO NOTHING",
            [k[0] for k in subs], [k[1] for k in subs])
        await conn.execute("INSERT INTO subjects (kind, ip) SELECT 'ip', ip::inet FROM unnest($1::text[]) AS ip "
                           "ON CONFLICT DO NOTHING", ips)
    raise RuntimeError("subjects vanished while being attributed")


async def attribute(pool: Any, settings: Settings, min_rank: int, window_s: int, limit: int,
                    conn: Conn | None = None) -> tuple[int, set[int], int, int]:
    """One batch per node: (rows walked, subjects touched, observations attributed, out of jurisdiction).
    The rows stay in the server: only each batch's distinct addresses and leases come to Python (for the
    country lookup and the subjects), then one INSERT … SELECT attributes the whole batch. With `conn`, the
    rebuild's: the attributions table is its own (locked, emptied, without indexes) until it commits."""
    if conn is None:
        async with pool.acquire() as mine:
            return await _attribute(mine, settings, min_rank, window_s, limit, _INSERT_ATTRIBUTIONS)
    return await _attribute(conn, settings, min_rank, window_s, limit, _INSERT_BULK)


async def _attribute(conn: Conn, settings: Settings, min_rank: int, window_s: int, limit: int, insert: str) -> tuple[
        int, set[int], int, int]:
    walked, touched, counted, foreign = 0, set(), 0, 0
    for node in [r["node"] for r in await conn.fetch("SELECT node FROM chain_heads ORDER BY node")]:
        async with conn.transaction():
            await conn.execute("INSERT INTO attribution_progress (node, seq) VALUES ($1, 0) "
                               "ON CONFLICT (node) DO NOTHING", node)
            after = await conn.fetchval("SELECT seq FROM attribution_progress WHERE node = $1 FOR UPDATE",
                                        node)
            span = await conn.fetchrow(_SPAN, node, after, limit)
            assert span is not None  # an aggregate: always one row
            if not span["n"]:
                continue
            walked += span["n"]
            batch = (node, after, span["upto"], min_rank)
            subjects, attributed, foreign_here = await _attribute_batch(conn, settings, window_s, batch, insert)
            touched |= subjects
            counted += attributed
            foreign += foreign_here
            # a lie in a window already counted against someone: re-evaluate them
            if liars := await conn.fetch(_LIARS, *batch[:3]):
                touched |= {r["subject_id"] for r in await conn.fetch(
                    _LIED, [r["target_id"] for r in liars], [r["ip"] for r in liars])}
            await conn.execute("UPDATE attribution_progress SET seq = $2 WHERE node = $1", node, span["upto"])
    return walked, touched, counted, foreign


async def _attribute_batch(conn: Conn, settings: Settings, window_s: int, batch: tuple[str, int, int, int],
                           insert: str) -> tuple[set[int], int, int]:
    keys: list[tuple[str, str] | str] = []
    countries: dict[str, str | None] = {}
    for r in await conn.fetch(_DISTINCT_KEYS, *batch):
        keys.append((r["isp"], r["subscriber_ref"]) if r["isp"] is not None else r["ip"])
        countries[r["ip"]] = _country(r["ip"], settings.policy.test_country)
    if not keys:
        return set(), 0, 0
    ids = await _subject_ids(conn, keys)  # created where missing; subscribers' the INSERT finds by key
    ips = list(countries)
    inside = [covered(countries[ip], settings.policy.jurisdictions) for ip in ips]
    rows = await conn.fetch(insert, *batch, window_s, ips, [countries[ip] for ip in ips],
                            inside, [ids.get(ip) for ip in ips])
    return {r["subject_id"] for r in rows}, len(rows), sum(1 for r in rows if not r["in_jurisdiction"])
