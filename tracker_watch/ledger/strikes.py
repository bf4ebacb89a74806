"""The strike engine: evidence → subjects → strikes → notices, all idempotent in the database.

1. *Attribute*: walk each node's evidence chain from where the last pass stopped (positions commit in
   order per node) and attribute every observation at or above the minimum grade to a subject — the ISP
   subscriber whose lease covers its address, port and time, else the bare IP — with its country.
2. *Evaluate*: for each touched subject, under a row lock on the subject, fold its attributions into
   (work, window) incidents, drop those out of jurisdiction or from a peer that was corrupt in that
   window, and run the pure policy over them with the subject's issued strikes (`policy.plan`): issued
   strikes stand, new ones are inserted (a partial unique index makes a second insert impossible), and
   the few that no longer follow from the evidence are marked superseded, their notices cancelled or, if
   the ISP may hold them, withdrawn. Each new strike gets a notice and puts its evidence on legal hold.
   Only the incidents that can change the plan are read (the strikes' own and those from `policy.horizon`
   on), the whole history only for a subject one of whose strikes stops standing (ledger/unchanged.py).
3. *Void*: an operator's void, and the re-evaluation it causes, run in one transaction under the same
   subject lock; the voided strike's window (all the subject's incidents in it) never counts again.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from tracker_watch import log, metrics
from tracker_watch.config import Settings
from tracker_watch.domain import policy as pol
from tracker_watch.domain.evidence import Grade
from tracker_watch.domain.incidents import window_start
from tracker_watch.ledger.attribution import (
    BACKLOG,
    EMPTY_ATTRIBUTIONS,
    INDEX_ATTRIBUTIONS,
    REBUILD_BATCH,
    VACUUM_ATTRIBUTIONS,
    attribute,
)
from tracker_watch.ledger.db import Conn, gc_paused
from tracker_watch.ledger.notice_store import create_notices, retire_notices
from tracker_watch.ledger.unchanged import (
    POLICY_INCIDENTS,
    changed_subjects,
    counting,
    fingerprint,
    key_window,
    tick_inputs,
)
from tracker_watch.ledger.unchanged import incident_key as incident_key

_log = log.get("tracker_watch.ledger")

_INPUTS = POLICY_INCIDENTS.format(where="WHERE a.subject_id = ANY($1::bigint[]) AND a.subject_id BETWEEN $2 AND $3")
# the id range (chunks are sorted) lets the planner see how few rows a chunk needs: an index range scan
# instead of a scan of the whole table per chunk
_STRIKES_OF = """
    SELECT id, subject_id, level, cycle_start, issued_at, incident_key, status
    FROM strikes
    WHERE subject_id = ANY($1::bigint[]) AND subject_id BETWEEN $2 AND $3 AND status IN ('voided', 'active')
"""
# row locks on the subjects, in id order: they live in the rows, not in the shared lock table, so a chunk of
# thousands costs little (2,000 advisory locks per transaction took ~0.8 s), and ordering prevents deadlocks
_LOCK_SUBJECTS = """
    SELECT id, policy_digest FROM subjects WHERE id = ANY($1::bigint[]) ORDER BY id FOR NO KEY UPDATE
"""

# legal hold: the incident rows are locked in key order first (evidence writers upsert in that order too, see
# ledger/evidence.py), so a writer and the ledger never each hold a row the other waits for (issue 14)
_HOLD = """
    UPDATE incidents SET legal_hold = true WHERE id IN (
        SELECT i.id FROM incidents i JOIN attributions a
            ON i.target_id = a.target_id AND i.ip = a.ip AND i.window_start = a.window_start
        JOIN unnest($1::bigint[], $2::bigint[], $3::timestamptz[]) AS u(subject_id, work_id, ws)
            ON a.subject_id = u.subject_id AND a.work_id = u.work_id AND a.window_start = u.ws
        WHERE NOT i.legal_hold ORDER BY i.target_id, i.ip, i.window_start FOR NO KEY UPDATE OF i)
"""

# a chunk small enough that two lanes overlap in a tick of a few thousand subjects, large enough that its
# statements' fixed costs stay small
_MIN_CHUNK = 1000


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


class Retirement(NamedTuple):
    """Who retires strikes that stop standing, why (audit log), and the cause the ISP is told."""

    actor: str
    reason: str
    cause: str  # a key of domain.withdrawals.REASONS


_BY_EVIDENCE = Retirement("ledger", "no longer follows from the evidence", "evidence")


class VoidResult(NamedTuple):
    created: int
    superseded: int
    withdrawals: int  # withdrawals queued for notices the ISP may hold (the voided strike's and those after it)


def _count_issued(rows: list[Any]) -> None:
    """One metric increment per level, not per strike; the `strike_issued` line per strike stays (operators
    follow it, README.md), and costs nothing when info logs are off."""
    levels: dict[int, int] = {}
    for r in rows:
        levels[r["level"]] = levels.get(r["level"], 0) + 1
        _log.info("strike_issued", strike=r["id"], subject=r["subject_id"], level=r["level"])
    for level, n in sorted(levels.items()):
        metrics.STRIKES_ISSUED.labels(level=str(level)).inc(n)


class StrikeLedger:
    def __init__(self, pool: Any, settings: Settings) -> None:
        self.pool = pool
        self.settings = settings
        self.policy = strike_policy(settings)
        self.policy_fp = fingerprint(self.policy)
        self.min_rank = Grade(settings.policy.minimum_grade).rank
        self.window_s = settings.evidence.incident_window_s

    async def tick(self, batch: int = 5000) -> TickReport:
        report, _ = await self._tick(batch)
        return report

    async def _tick(self, batch: int) -> tuple[TickReport, set[int]]:
        report = TickReport()
        subjects: set[int] = set()
        # the first evaluation of a large chain attributes it as a rebuild does
        if not await self.pool.fetchval("SELECT EXISTS (SELECT 1 FROM attributions)") and await self.pool.fetchval(
                BACKLOG) >= REBUILD_BATCH:
            subjects |= await self._attribute_in_bulk(report, only_if_empty=True) or set()
        while True:
            done, touched, counted, foreign = await self.attribute(batch)
            subjects |= touched
            report.attributed += counted
            report.out_of_jurisdiction += foreign
            metrics.EVIDENCE_OUT_OF_JURISDICTION.inc(foreign)
            if done < batch:
                break
        report.created, report.superseded = await self.evaluate_subjects(subjects)
        report.subjects = len(subjects)
        return report, subjects

    # --- attribution ---------------------------------------------------------------------------
    async def attribute(self, limit: int, conn: Conn | None = None) -> tuple[int, set[int], int, int]:
        """One batch per node: (rows walked, subjects touched, observations attributed, out of jurisdiction)."""
        return await attribute(self.pool, self.settings, self.min_rank, self.window_s, limit, conn)

    # --- evaluation ------------------------------------------------------------------------------
    async def evaluate_subject(self, subject_id: int) -> tuple[int, int]:
        """Make the subject's active strikes what the policy says; returns (created, superseded)."""
        return await self.evaluate_subjects({subject_id})

    async def evaluate_subjects(self, subject_ids: set[int], chunk: int = 10000, lanes: int = 2) -> tuple[int, int]:
        """Evaluate in chunks of sorted subject ids, each its own transaction, `lanes` at a time: while one
        chunk is planned in Python, PostgreSQL reads or writes another's rows on the other core (one lane left
        both idle in turn, BENCHMARKS.md, Ledger). Chunks hold disjoint subjects, locked in id order."""
        ordered = sorted(subject_ids)
        # at least two chunks per lane, so that the lanes overlap for most of the run
        size = min(chunk, max(_MIN_CHUNK, -(-len(ordered) // (2 * lanes))))
        pending = [ordered[i:i + size] for i in range(0, len(ordered), size)]
        totals = [0, 0]

        async def lane() -> None:
            while pending:
                c, s = await self._evaluate_chunk(pending.pop(0))
                totals[0] += c
                totals[1] += s

        if lanes == 1 or len(pending) == 1:
            await lane()
            return totals[0], totals[1]
        try:
            async with asyncio.TaskGroup() as tg:
                for _ in range(lanes):
                    tg.create_task(lane())
        except BaseExceptionGroup as group:  # callers tell outages from bugs by the exception itself
            raise group.exceptions[0] from None
        return totals[0], totals[1]

    async def _evaluate_chunk(self, subject_ids: list[int]) -> tuple[int, int]:
        async with self.pool.acquire() as conn, conn.transaction():
            # one evaluator per subject at a time (two nodes, a void and the daemon's tick): see _LOCK_SUBJECTS
            with gc_paused():  # ~10 objects per incident, none cyclic: see db.gc_paused
                stored = {r["id"]: r["policy_digest"] for r in await conn.fetch(_LOCK_SUBJECTS, subject_ids)}
                created, superseded, _ = await self._evaluate_locked(conn, subject_ids, _BY_EVIDENCE, stored)
                return created, superseded

    async def _evaluate_locked(self, conn: Conn, subject_ids: list[int], why: Retirement,
                               stored: dict[int, str | None] | None = None) -> tuple[int, int, int]:
        """Plan each subject's strikes from its incidents and issued strikes; (created, superseded, withdrawals).
        With `stored` (the digests the subjects were last planned from), subjects whose inputs are unchanged
        are skipped (ledger/unchanged.py); a void passes none, its subject's voided windows having changed."""
        span = (subject_ids, min(subject_ids), max(subject_ids))
        voided: dict[int, set[datetime]] = {}
        # (strike, id) pairs, not a dict keyed by strikes: hashing two datetimes per strike is wasted on the
        # many subjects with nothing to withdraw
        active: dict[int, list[tuple[pol.Strike, int]]] = {}
        for r in await conn.fetch(_STRIKES_OF, *span):
            if r["status"] == "voided":
                voided.setdefault(r["subject_id"], set()).add(key_window(r["incident_key"]))
            else:
                strike = pol.Strike(r["level"], r["cycle_start"], r["issued_at"], r["incident_key"])
                active.setdefault(r["subject_id"], []).append((strike, r["id"]))
        issued = {s: [x for x, _ in mine] for s, mine in active.items()}
        incidents, digests = await tick_inputs(conn, span, issued, self.policy, self.policy_fp)
        if stored is not None:
            subject_ids = [s for s in subject_ids if digests[s] != stored.get(s)]
            if not subject_ids:
                return 0, 0, 0
        # read from the horizon on, a subject's plan is its whole history's while its strikes all stand; for
        # the rare one whose strikes do not (a void, an incident that stopped counting), read everything
        unsettled = [s for s in subject_ids if s in issued and not pol.settled(
            incidents[s], self.policy, issued[s], frozenset(voided.get(s, ())))]
        if unsettled:
            incidents.update({s: [] for s in unsettled})
            for r in await conn.fetch(_INPUTS, unsettled, min(unsettled), max(unsettled)):
                if (incident := counting(r)) is not None:
                    incidents[r["subject_id"]].append(incident)
        superseded: list[int] = []
        wanted: list[tuple[int, pol.Strike]] = []
        for subject in subject_ids:
            mine = active.get(subject, [])
            plan = pol.plan(incidents[subject], self.policy, issued.get(subject, ()),
                            frozenset(voided.get(subject, ())))
            if plan.withdraw:
                ids = dict(mine)
                superseded += [ids[s] for s in plan.withdraw]
            wanted += [(subject, s) for s in plan.add]
        withdrawals = await self._supersede(conn, superseded, why) if superseded else 0
        created = await self._issue(conn, wanted)
        await conn.execute("UPDATE subjects s SET policy_digest = u.d FROM unnest($1::bigint[], $2::text[]) "
                           "AS u(id, d) WHERE s.id = u.id", subject_ids, [digests[s] for s in subject_ids])
        return created, len(superseded), withdrawals

    async def _supersede(self, conn: Conn, strike_ids: list[int], why: Retirement) -> int:
        metrics.STRIKES_SUPERSEDED.inc(len(strike_ids))
        await conn.execute(
            "UPDATE strikes SET status = 'superseded', changed_at = now(), changed_by = $2, reason = $3 "
            "WHERE id = ANY($1::bigint[])", strike_ids, why.actor, why.reason)
        await conn.execute(
            "INSERT INTO audit_log (actor, action, object, detail) SELECT $1, 'strike.supersede', 'strike:' || id, "
            "jsonb_build_object('reason', $2::text) FROM unnest($3::bigint[]) AS id", why.actor, why.reason, strike_ids)
        for sid in strike_ids:
            _log.info("strike_superseded", strike=sid, reason=why.reason)
        return len(await retire_notices(conn, self.settings, strike_ids, why.cause))

    async def _issue(self, conn: Conn, wanted: list[tuple[int, pol.Strike]]) -> int:
        """Insert the new strikes (a unique index makes a second one impossible), hold their evidence, and
        queue their notices: a fixed number of statements for the whole chunk."""
        if not wanted:
            return 0
        rows = await conn.fetch(
            "INSERT INTO strikes (subject_id, level, cycle_start, issued_at, work_id, incident_key) "
            "SELECT * FROM unnest($1::bigint[], $2::int[], $3::timestamptz[], $4::timestamptz[], $5::bigint[], "
            "$6::text[]) ON CONFLICT (subject_id, cycle_start, level) WHERE status = 'active' DO NOTHING "
            "RETURNING id, subject_id, level, work_id, issued_at",
            [w[0] for w in wanted], [w[1].level for w in wanted], [w[1].cycle_start for w in wanted],
            [w[1].issued_at for w in wanted], [int(w[1].incident.split("/", 1)[0]) for w in wanted],
            [w[1].incident for w in wanted])
        if not rows:
            return 0
        await self._hold_evidence(conn, rows)
        await create_notices(conn, self.settings, [r["id"] for r in rows])
        _count_issued(rows)
        return len(rows)

    async def _hold_evidence(self, conn: Conn, strikes: list[Any]) -> None:
        """Evidence a strike rests on is never purged by retention."""
        await conn.execute(_HOLD,
            [r["subject_id"] for r in strikes], [r["work_id"] for r in strikes],
            [window_start(r["issued_at"], self.window_s) for r in strikes])

    # --- operator actions ------------------------------------------------------------------------
    async def void(self, strike_id: int, actor: str, reason: str) -> VoidResult | None:
        """Void an active strike (the dispute is upheld): its window never counts again, its notice is
        cancelled or withdrawn, and what followed it is re-derived — all in one transaction, logged."""
        async with self.pool.acquire() as conn, conn.transaction():
            subject = await conn.fetchval("SELECT subject_id FROM strikes WHERE id = $1", strike_id)
            if subject is None:
                return None
            await conn.execute(_LOCK_SUBJECTS, [subject])
            row = await conn.fetchrow(
                "UPDATE strikes SET status = 'voided', changed_at = now(), changed_by = $2, reason = $3 "
                "WHERE id = $1 AND status = 'active' RETURNING subject_id", strike_id, actor, reason)
            if row is None:
                return None
            withdrawn = len(await retire_notices(conn, self.settings, [strike_id], "voided"))
            await conn.execute("INSERT INTO audit_log (actor, action, object, detail) VALUES ($1, 'strike.void', $2, "
                               "jsonb_build_object('reason', $3::text))", actor, f"strike:{strike_id}", reason)
            _log.info("strike_voided", strike=strike_id, actor=actor)
            why = Retirement(actor, f"rested on strike {strike_id}, which was voided", "rested_on_void")
            created, superseded, more = await self._evaluate_locked(conn, [int(subject)], why)
        return VoidResult(created, superseded, withdrawn + more)

    async def _attribute_in_bulk(self, report: TickReport, only_if_empty: bool = False) -> set[int] | None:
        """Attribute every node's chain afresh; the subjects touched (None: `only_if_empty`, and it was not).
        One transaction: nobody sees the table half derived (a tick elsewhere waits for it), so its indexes
        can go while it fills (TRUNCATE, not DELETE: dead rows would double the table)."""
        touched: set[int] = set()
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("LOCK TABLE attributions IN ACCESS EXCLUSIVE MODE")
            if only_if_empty and await conn.fetchval("SELECT EXISTS (SELECT 1 FROM attributions)"):
                return None
            await conn.execute(EMPTY_ATTRIBUTIONS)
            while True:
                done, subjects, counted, foreign = await self.attribute(REBUILD_BATCH, conn)
                touched |= subjects
                report.attributed += counted
                report.out_of_jurisdiction += foreign
                if done < REBUILD_BATCH:
                    break
            await conn.execute(INDEX_ATTRIBUTIONS)
        await self.pool.execute(VACUUM_ATTRIBUTIONS)
        return touched

    async def rebuild(self, full: bool = False) -> TickReport:
        """Re-derive attributions and strikes from the evidence alone; a sound ledger comes out unchanged.
        Subjects whose policy inputs come out as they were last planned from are not planned again (one
        streaming pass finds them, ledger/unchanged.py) unless `full`."""
        report = TickReport()
        touched = await self._attribute_in_bulk(report)
        assert touched is not None
        evaluate, seen = (touched, touched) if full else await changed_subjects(self.pool, self.policy_fp)
        # and the subjects whose strikes no longer rest on any attribution
        evaluate |= {int(r["subject_id"]) for r in await self.pool.fetch(
            "SELECT DISTINCT subject_id FROM strikes WHERE status = 'active'")} - seen
        report.created, report.superseded = await self.evaluate_subjects(evaluate)
        report.subjects = len(evaluate)
        return report
