"""What the policy sees of a subject, and a digest of it: a subject whose digest is the one its strikes were
last planned from needs no new evaluation.

The policy (domain/policy.py) is a pure function of a subject's counting incidents, its issued strikes and
its voided windows. Strikes change only by evaluation (which stores the digest of what it planned from) and
by a void (which re-evaluates at once), so when the incidents digest — with the policy's settings — equals
the stored one, planning again would keep every strike and add none. A rebuild of a sound ledger finds that
for every subject: it re-derives the attributions, reads all subjects' inputs in one pass, and evaluates
only those whose digest moved (issue 14: 100,000 subjects re-planned for nothing took ~48 s).
"""

from __future__ import annotations

import functools
import hashlib
import operator
from collections.abc import Iterable
from datetime import datetime
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


def fingerprint(policy: pol.StrikePolicy) -> str:
    return hashlib.sha256(repr(policy).encode()).hexdigest()[:16]


def digest(policy_fp: str, incidents: Iterable[pol.Incident]) -> str:
    # the same bytes as one update per incident, hashed in one call
    lines = "".join([f"{i.key}|{i.at.isoformat()}\n" for i in sorted(incidents, key=_by_key)])
    return hashlib.sha256((policy_fp + lines).encode()).hexdigest()


_by_key = operator.attrgetter("key")


async def changed_subjects(pool: Any, policy_fp: str) -> tuple[set[int], set[int]]:
    """(subjects with attributions whose digest differs from the stored one, all subjects with attributions),
    in one streaming pass over the attributions."""
    changed: set[int] = set()
    seen: set[int] = set()
    async with pool.acquire() as conn, conn.transaction():
        # the whole table grouped and sorted once: in memory, not in temporary files (4 MB by default)
        await conn.execute("SET LOCAL work_mem = '128MB'")
        stored = {r["id"]: r["policy_digest"] for r in await conn.fetch("SELECT id, policy_digest FROM subjects")}
        current: int | None = None
        mine: list[pol.Incident] = []
        query = POLICY_INCIDENTS.format(where="") + " ORDER BY a.subject_id"
        async for r in conn.cursor(query, prefetch=20000):
            if r["subject_id"] != current:
                if current is not None and digest(policy_fp, mine) != stored.get(current):
                    changed.add(current)
                current, mine = r["subject_id"], []
                seen.add(current)
            if (incident := counting(r)) is not None:
                mine.append(incident)
        if current is not None and digest(policy_fp, mine) != stored.get(current):
            changed.add(current)
    return changed, seen
