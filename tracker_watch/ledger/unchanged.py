"""What the policy sees of a subject, and a digest of it: a subject whose digest is the one its strikes were
last planned from needs no new evaluation.

The policy (domain/policy.py) is a pure function of a subject's counting incidents, its issued strikes and
its voided windows. Strikes change only by evaluation (which stores the digest of what it planned from) and
by a void (which re-evaluates at once), so when the incidents digest — with the policy's settings — equals
the stored one, planning again would keep every strike and add none. A rebuild of a sound ledger finds that
for every subject: it re-derives the attributions, reads all subjects' digests in one pass, and evaluates
only those whose digest moved (issue 14: 100,000 subjects re-planned for nothing took ~48 s).

The digest is computed by PostgreSQL, next to the rows (issue 14, target 2): the policy fingerprint, the
number of counting incidents and two 64-bit XORs of seeded hashes of each one's (work, window, first
sighting) — order-free, so no sort and no rows to Python. A tick then needs only the incidents that can change
a subject's plan (`TICK_INPUTS`, `policy.horizon`), not its whole history. Digests stored in the earlier
format (a SHA-256 in Python) never match: the first rebuild after the upgrade plans every subject once.
"""

from __future__ import annotations

import functools
import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

from tracker_watch.domain import policy as pol

# per (subject, work, window): the first sighting, and whether it counts (in jurisdiction, no corrupt peer).
# Only corrupt incidents matter in the join, and they are few (partial index, migration 0010): joining every
# incident hashed the whole table for each chunk of subjects. {where} narrows the subjects.
POLICY_INCIDENTS = """
    SELECT a.subject_id, a.work_id, a.window_start, min(a.observed_at) AS at,
           bool_or(coalesce(i.corrupt, false)) AS corrupt, bool_or(a.in_jurisdiction) AS in_jurisdiction
    FROM attributions a
    LEFT JOIN incidents i ON i.target_id = a.target_id AND i.ip = a.ip AND i.window_start = a.window_start
                             AND i.corrupt
    {where}
    GROUP BY a.subject_id, a.work_id, a.window_start
"""


# windows are few (a year of daily ones is 365), (work, window) pairs many: caching whole keys missed on most
# rows once there were more pairs than cache entries (200 works × 365 days at 1M incidents)
_iso = functools.lru_cache(maxsize=65536)(datetime.isoformat)


def incident_key(work_id: int, start: datetime) -> str:
    return f"{work_id}/{_iso(start)}"


def counting(r: Any) -> pol.Incident | None:
    """The policy's incident for a row of POLICY_INCIDENTS, or None if it does not count."""
    if not r["in_jurisdiction"] or r["corrupt"]:
        return None
    start = r["window_start"]
    return pol.Incident(f"{r['work_id']}/{_iso(start)}", r["at"], start)


@functools.lru_cache(maxsize=65536)
def key_window(key: str) -> datetime:
    """The evidence window an incident key names (see incident_key)."""
    return datetime.fromisoformat(key.split("/", 1)[1])


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


@functools.lru_cache(maxsize=65536)
def _instant(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _micros(t: datetime) -> int:
    return (t - _EPOCH) // _US


def incidents_of(r: Any, since: int | None, own: set[tuple[int, int]]) -> list[pol.Incident]:
    """The policy's incidents in a row of TICK_INPUTS that its plan needs: sighted at or after `since` (µs since
    the epoch; None: all) or a strike's own (work, window in µs). Instants come as integers, so the many left
    out never become datetimes."""
    if r["works"] is None:
        return []
    return [pol.Incident(f"{w}/{_iso(_instant(ws))}", _EPOCH + timedelta(microseconds=at), _instant(ws))
            for w, ws, at in zip(r["works"], r["windows"], r["ats"], strict=True)
            if since is None or at >= since or (w, ws) in own]


def fingerprint(policy: pol.StrikePolicy) -> str:
    return hashlib.sha256(repr(policy).encode()).hexdigest()[:16]


def empty_digest(policy_fp: str) -> str:
    """The digest of a subject with no counting incident, as _DIGEST computes it."""
    return f"{policy_fp}:0:0:0"


# per (subject, work, window) of the subjects in {where}: the first sighting, and whether it counts
_GROUPS = """
    SELECT a.subject_id, a.work_id, a.window_start, min(a.observed_at) AS at,
           coalesce(bool_or(a.in_jurisdiction), false) AND NOT bool_or(coalesce(i.corrupt, false)) AS counts
    FROM attributions a
    LEFT JOIN incidents i ON i.target_id = a.target_id AND i.ip = a.ip AND i.window_start = a.window_start
                             AND i.corrupt
    {where}
    GROUP BY a.subject_id, a.work_id, a.window_start
"""
# per subject (grouped rows g, the policy fingerprint as $fp): hash_record_extended hashes the values as stored
# (a timestamptz by its instant, whatever the session's time zone)
_DIGEST = """
    {fp}::text || ':' || count(*) FILTER (WHERE g.counts)
    || ':' || coalesce(bit_xor(hash_record_extended(row(g.work_id, g.window_start, g.at), 1))
                       FILTER (WHERE g.counts), 0)
    || ':' || coalesce(bit_xor(hash_record_extended(row(g.work_id, g.window_start, g.at), 2))
                       FILTER (WHERE g.counts), 0)
"""
# a chunk's digests and counting incidents, instants in µs since the epoch (see incidents_of). No join to the
# strikes' horizons: the planner ran a generic plan's nested loop over the parameter arrays for every group
TICK_INPUTS = """
    SELECT g.subject_id, """ + _DIGEST.format(fp="$4") + """ AS digest,
           array_agg(g.work_id) FILTER (WHERE g.counts) AS works,
           array_agg((extract(epoch FROM g.window_start) * 1000000)::bigint) FILTER (WHERE g.counts) AS windows,
           array_agg((extract(epoch FROM g.at) * 1000000)::bigint) FILTER (WHERE g.counts) AS ats
    FROM (""" + _GROUPS.format(
        where="WHERE a.subject_id = ANY($1::bigint[]) AND a.subject_id BETWEEN $2 AND $3") + """) g
    GROUP BY g.subject_id
"""
_CHANGED = """
    SELECT d.subject_id, d.digest IS DISTINCT FROM s.policy_digest AS changed
    FROM (SELECT g.subject_id, """ + _DIGEST.format(fp="$1") + """ AS digest
          FROM (""" + _GROUPS.format(where="") + """) g GROUP BY g.subject_id) d
    LEFT JOIN subjects s ON s.id = d.subject_id
"""


async def tick_inputs(conn: Any, span: tuple[list[int], int, int], issued: dict[int, list[pol.Strike]],
                      policy: pol.StrikePolicy, policy_fp: str) -> tuple[dict[int, list[pol.Incident]], dict[int, str]]:
    """Each subject's digest, and the counting incidents its plan needs: its strikes' own and those at or after
    its horizon (all, for a subject without strikes). `span`: (sorted subject ids, lowest, highest)."""
    empty = empty_digest(policy_fp)
    incidents: dict[int, list[pol.Incident]] = {s: [] for s in span[0]}
    digests = {s: empty for s in span[0]}
    for r in await conn.fetch(TICK_INPUTS, *span, policy_fp):
        subject = r["subject_id"]
        digests[subject] = r["digest"]
        strikes = issued.get(subject, [])
        h = pol.horizon(strikes, policy)
        own = {(int(x.incident.split("/", 1)[0]), _micros(key_window(x.incident))) for x in strikes}
        incidents[subject] = incidents_of(r, None if h is None else _micros(h), own)
    return incidents, digests


async def changed_subjects(pool: Any, policy_fp: str) -> tuple[set[int], set[int]]:
    """(subjects with attributions whose digest differs from the stored one, all subjects with attributions),
    in one pass over the attributions in the server."""
    changed: set[int] = set()
    seen: set[int] = set()
    async with pool.acquire() as conn, conn.transaction():
        # the whole table grouped once: in memory, not in temporary files (4 MB by default)
        await conn.execute("SET LOCAL work_mem = '128MB'")
        for r in await conn.fetch(_CHANGED, policy_fp):
            seen.add(r["subject_id"])
            if r["changed"]:
                changed.add(r["subject_id"])
    return changed, seen
