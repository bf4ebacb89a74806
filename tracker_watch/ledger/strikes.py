"""The strike engine: evidence → subjects → strikes → notices, all idempotent in the database.

1. *Attribute*: walk each node's evidence chain from where the last pass stopped (positions commit in
   order per node) and attribute every observation at or above the minimum grade to a subject — the ISP
   subscriber whose lease covers its address, port and time, else the bare IP — with its country.
2. *Evaluate*: for each touched subject, under a per-subject advisory lock, fold its attributions into
   (work, window) incidents, drop those out of jurisdiction or from a peer that was corrupt in that
   window, run the pure policy, and make the active strikes equal to its result: missing strikes are
   inserted (a partial unique index makes a second insert impossible), strikes it no longer yields are
   marked superseded. Each new strike gets a notice and puts its evidence on legal hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from tracker_watch import log, metrics
from tracker_watch.config import Settings
from tracker_watch.domain import policy as pol
from tracker_watch.domain.evidence import Grade
from tracker_watch.domain.incidents import window_start
from tracker_watch.domain.jurisdiction import country_of, covered
from tracker_watch.ledger.db import Conn
from tracker_watch.ledger.notice_store import create_notice

_log = log.get("tracker_watch.ledger")

_POLICY_INCIDENTS = """
    SELECT a.work_id, a.window_start, min(a.observed_at) AS at, bool_or(coalesce(i.corrupt, false)) AS corrupt,
           bool_or(a.in_jurisdiction) AS in_jurisdiction
    FROM attributions a
    LEFT JOIN incidents i ON i.target_id = a.target_id AND i.ip = a.ip AND i.window_start = a.window_start
    WHERE a.subject_id = $1
    GROUP BY a.work_id, a.window_start
"""


@dataclass
class TickReport:
    attributed: int = 0
    subjects: int = 0
    created: int = 0
    superseded: int = 0
    out_of_jurisdiction: int = 0


def strike_policy(settings: Settings) -> pol.StrikePolicy:
    p = settings.policy
    return pol.StrikePolicy(min_gap=timedelta(days=p.min_gap_days), level2_window=timedelta(days=p.level2_window_days),
                            level3_window=timedelta(days=p.level3_window_days),
                            referral_cooldown=timedelta(days=p.referral_cooldown_days))


def incident_key(work_id: int, start: Any) -> str:
    return f"{work_id}/{start.isoformat()}"


class StrikeLedger:
    def __init__(self, pool: Any, settings: Settings) -> None:
        self.pool = pool
        self.settings = settings
        self.policy = strike_policy(settings)
        self.min_rank = Grade(settings.policy.minimum_grade).rank
        self.window_s = settings.evidence.incident_window_s

    async def tick(self, batch: int = 5000) -> TickReport:
        report = TickReport()
        subjects: set[int] = set()
        while True:
            done, touched, counted, foreign = await self.attribute(batch)
            subjects |= touched
            report.attributed += counted
            report.out_of_jurisdiction += foreign
            metrics.EVIDENCE_OUT_OF_JURISDICTION.inc(foreign)
            if done < batch:
                break
        for subject in sorted(subjects):
            created, superseded = await self.evaluate_subject(subject)
            report.created += created
            report.superseded += superseded
        report.subjects = len(subjects)
        return report

    # --- attribution -----------------------------------------------------------------------------
    async def attribute(self, limit: int) -> tuple[int, set[int], int, int]:
        """One batch per node: (rows walked, subjects touched, observations attributed, out of jurisdiction)."""
        walked, touched, counted, foreign = 0, set(), 0, 0
        async with self.pool.acquire() as conn:
            for node in [r["node"] for r in await conn.fetch("SELECT node FROM chain_heads ORDER BY node")]:
                async with conn.transaction():
                    await conn.execute("INSERT INTO attribution_progress (node, seq) VALUES ($1, 0) "
                                       "ON CONFLICT (node) DO NOTHING", node)
                    after = await conn.fetchval("SELECT seq FROM attribution_progress WHERE node = $1 FOR UPDATE",
                                                node)
                    rows = await conn.fetch(
                        "SELECT o.id, o.target_id, t.work_id, o.ip, o.port, o.observed_at, o.grade, o.chain_seq "
                        "FROM observations o JOIN targets t ON t.id = o.target_id "
                        "WHERE o.node = $1 AND o.chain_seq > $2 ORDER BY o.chain_seq LIMIT $3", node, after, limit)
                    if not rows:
                        continue
                    walked += len(rows)
                    for r in rows:
                        subject, country_ok = await self._attribute_one(conn, r)
                        if subject is not None:
                            touched.add(subject)
                            counted += 1
                            foreign += not country_ok
                        elif r["grade"] == Grade.CORRUPT.value and r["ip"] is not None:
                            # a lie in a window already counted against someone: re-evaluate them
                            touched |= {x["subject_id"] for x in await conn.fetch(
                                "SELECT DISTINCT subject_id FROM attributions WHERE target_id = $1 AND ip = $2",
                                r["target_id"], r["ip"])}
                    await conn.execute("UPDATE attribution_progress SET seq = $2 WHERE node = $1", node,
                                       rows[-1]["chain_seq"])
        return walked, touched, counted, foreign

    async def _attribute_one(self, conn: Conn, r: Any) -> tuple[int | None, bool]:
        if r["ip"] is None or Grade(r["grade"]).rank < self.min_rank:
            return None, False
        ip = str(r["ip"])
        country = country_of(ip, self.settings.policy.test_country)
        in_jurisdiction = covered(country, self.settings.policy.jurisdictions)
        lease = await conn.fetchrow(
            "SELECT id, isp, subscriber_ref FROM isp_leases WHERE prefix >>= $1::inet AND ports @> $2::int "
            "AND valid @> $3::timestamptz LIMIT 1", ip, r["port"], r["observed_at"])
        if lease is not None:
            subject = await conn.fetchval(
                "INSERT INTO subjects (kind, isp, subscriber_ref) VALUES ('subscriber', $1, $2) "
                "ON CONFLICT (isp, subscriber_ref) WHERE kind = 'subscriber' DO UPDATE SET isp = EXCLUDED.isp "
                "RETURNING id", lease["isp"], lease["subscriber_ref"])
        else:
            subject = await conn.fetchval(
                "INSERT INTO subjects (kind, ip) VALUES ('ip', $1) ON CONFLICT (ip) WHERE kind = 'ip' "
                "DO UPDATE SET ip = EXCLUDED.ip RETURNING id", ip)
        await conn.execute(
            "INSERT INTO attributions (observation_id, subject_id, lease_id, target_id, work_id, ip, port, "
            "observed_at, window_start, country, in_jurisdiction) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, "
            "$11) ON CONFLICT (observation_id) DO NOTHING",
            r["id"], subject, lease["id"] if lease else None, r["target_id"], r["work_id"], ip, r["port"],
            r["observed_at"], window_start(r["observed_at"], self.window_s), country, in_jurisdiction)
        return int(subject), in_jurisdiction

    # --- evaluation ------------------------------------------------------------------------------
    async def evaluate_subject(self, subject_id: int) -> tuple[int, int]:
        """Make the subject's active strikes what the policy says; returns (created, superseded)."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('tracker_watch.subject'), $1::int)",
                               subject_id % 2_147_483_647)
            incidents = [pol.Incident(incident_key(r["work_id"], r["window_start"]), r["at"])
                         for r in await conn.fetch(_POLICY_INCIDENTS, subject_id)
                         if r["in_jurisdiction"] and not r["corrupt"]]
            excluded = frozenset(r["incident_key"] for r in await conn.fetch(
                "SELECT incident_key FROM strikes WHERE subject_id = $1 AND status = 'voided'", subject_id))
            desired = {(s.level, s.cycle_start, s.incident): s for s in pol.evaluate(incidents, self.policy, excluded)}
            active = {(r["level"], r["cycle_start"], r["incident_key"]): r["id"] for r in await conn.fetch(
                "SELECT id, level, cycle_start, incident_key FROM strikes WHERE subject_id = $1 AND status = 'active'",
                subject_id)}
            superseded = [sid for key, sid in active.items() if key not in desired]
            if superseded:
                metrics.STRIKES_SUPERSEDED.inc(len(superseded))
                await conn.execute(
                    "UPDATE strikes SET status = 'superseded', changed_at = now(), changed_by = 'ledger', "
                    "reason = 'no longer follows from the evidence' WHERE id = ANY($1::bigint[])", superseded)
                await conn.execute("UPDATE notices SET state = 'cancelled' WHERE strike_id = ANY($1::bigint[]) "
                                   "AND state IN ('pending', 'held', 'failed')", superseded)
            created = 0
            for key, s in desired.items():
                if key in active:
                    continue
                work_id = int(s.incident.split("/", 1)[0])
                strike_id = await conn.fetchval(
                    "INSERT INTO strikes (subject_id, level, cycle_start, issued_at, work_id, incident_key) "
                    "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (subject_id, cycle_start, level) "
                    "WHERE status = 'active' DO NOTHING RETURNING id",
                    subject_id, s.level, s.cycle_start, s.issued_at, work_id, s.incident)
                if strike_id is None:
                    continue
                created += 1
                metrics.STRIKES_ISSUED.labels(level=str(s.level)).inc()
                await self._hold_evidence(conn, subject_id, work_id, s)
                await create_notice(conn, self.settings, strike_id)
                _log.info("strike_issued", strike=strike_id, subject=subject_id, level=s.level)
            return created, len(superseded)

    async def _hold_evidence(self, conn: Conn, subject_id: int, work_id: int, s: pol.Strike) -> None:
        """Evidence a strike rests on is never purged by retention."""
        await conn.execute(
            "UPDATE incidents i SET legal_hold = true FROM attributions a WHERE a.subject_id = $1 AND a.work_id = $2 "
            "AND a.window_start = $3 AND i.target_id = a.target_id AND i.ip = a.ip AND i.window_start = a.window_start",
            subject_id, work_id, window_start(s.issued_at, self.window_s))

    # --- operator actions ------------------------------------------------------------------------
    async def void(self, strike_id: int, actor: str, reason: str) -> tuple[int, int] | None:
        """Void an active strike (the dispute is upheld), log it, and re-derive what follows."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "UPDATE strikes SET status = 'voided', changed_at = now(), changed_by = $2, reason = $3 "
                "WHERE id = $1 AND status = 'active' RETURNING subject_id", strike_id, actor, reason)
            if row is None:
                return None
            await conn.execute("UPDATE notices SET state = 'cancelled' WHERE strike_id = $1 "
                               "AND state IN ('pending', 'held', 'failed')", strike_id)
            await conn.execute("INSERT INTO audit_log (actor, action, object, detail) VALUES ($1, 'strike.void', $2, "
                               "jsonb_build_object('reason', $3::text))", actor, f"strike:{strike_id}", reason)
        return await self.evaluate_subject(int(row["subject_id"]))

    async def rebuild(self) -> TickReport:
        """Re-derive attributions and strikes from the evidence alone; a sound ledger comes out unchanged."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM attributions")
            await conn.execute("DELETE FROM attribution_progress")
        report = await self.tick()
        for r in await self.pool.fetch("SELECT DISTINCT subject_id FROM strikes WHERE status = 'active'"):
            created, superseded = await self.evaluate_subject(int(r["subject_id"]))
            report.created += created
            report.superseded += superseded
        return report
