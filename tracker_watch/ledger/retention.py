"""Retention: IP addresses are personal data. Evidence that never led to a strike is redacted after
`evidence.retention_days`: its personal fields are blanked, its hashes stay, so `ledger verify` still
passes and reports the rows as redacted. Incidents something relies on carry `legal_hold` and are kept.

Observations are partitioned by day (ledger/partitions.py). Once a whole month lies more than an incident
window before the cutoff, every incident with evidence in it is due or held, so the month's day
partitions are rewritten into one partition with the due rows already blank (and the others verbatim)
and the day partitions dropped: a month of evidence is redacted without updating one row in place.
Rows nearer the cutoff are redacted row by row as before. Either way the same rows end up blank.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from tracker_watch.ledger import partitions
from tracker_watch.ledger.db import Conn

PERSONAL = ("ip", "port", "peer_id", "client")
# an observation of a due incident, not yet redacted (o: observations, d: purge_due)
_DUE_ROW = """o.redacted_at IS NULL AND EXISTS (SELECT 1 FROM purge_due d WHERE o.target_id = d.target_id
    AND o.ip = d.ip AND o.observed_at >= d.window_start AND o.observed_at < d.window_end)"""

# incidents past retention, not held, not yet redacted. last_seen is not indexed (so the evidence writer's
# updates stay HOT, migration 0014); an incident's last_seen lies in its window, so window_start < cutoff
# is implied and reaches the partial index incidents_retention
_DUE = """
    SELECT id, target_id, ip, window_start, window_start + make_interval(secs => $2) AS window_end
    FROM incidents WHERE window_start < $1 AND last_seen < $1 AND NOT legal_hold AND redacted_at IS NULL
"""


@dataclass(frozen=True)
class PurgeReport:
    incidents: int
    observations: int
    incident_changes: int
    dry_run: bool
    months_compacted: int = 0


async def purge(conn: Conn, cutoff: datetime, window_s: int, dry_run: bool, compact: bool = True) -> PurgeReport:
    """Redact what is due; `compact=False` keeps to row-by-row updates (the baseline bench/retention.py
    measures the rewrite against)."""
    if not dry_run:
        await partitions.ensure(conn)  # rows the DEFAULT partition caught go to their days first
    async with conn.transaction():
        await conn.execute(f"CREATE TEMP TABLE purge_due ON COMMIT DROP AS {_DUE}", cutoff, float(window_s))
        await conn.execute("ANALYZE purge_due")  # temp tables get no autovacuum statistics
        counts = await conn.fetchrow("""
            SELECT (SELECT count(*) FROM purge_due) AS incidents,
                   (SELECT count(*) FROM observations o JOIN purge_due d ON o.target_id = d.target_id
                        AND o.ip = d.ip AND o.observed_at >= d.window_start AND o.observed_at < d.window_end
                    WHERE o.redacted_at IS NULL) AS observations,
                   (SELECT count(*) FROM incident_changes c JOIN purge_due d ON c.incident_id = d.id
                    WHERE c.redacted_at IS NULL) AS incident_changes""")
        assert counts is not None
        # a month ending a window before the cutoff holds only evidence of due (or held) incidents
        months = await partitions.compactable(conn, cutoff - timedelta(seconds=window_s)) if compact else []
        report = PurgeReport(counts["incidents"], counts["observations"], counts["incident_changes"], dry_run,
                             len(months))
        if dry_run:
            return report
        select = await _redacting_select(conn)
        for month in months:
            await partitions.compact_month(conn, month, select)
        # the append-only triggers let exactly this through: personal fields blanked, redacted_at set
        await conn.execute("SET LOCAL tracker_watch.redact = 'on'")
        await conn.execute(f"""
            UPDATE observations o SET ip = NULL, port = NULL, peer_id = NULL, client = NULL, redacted_at = now()
            WHERE {_DUE_ROW}""")
        await conn.execute("""
            UPDATE incident_changes c SET ip = NULL, ports = NULL, redacted_at = now()
            FROM purge_due d WHERE c.incident_id = d.id AND c.redacted_at IS NULL""")
        await conn.execute("""
            UPDATE incidents i SET ip = NULL, ports = '{}', redacted_at = now()
            FROM purge_due d WHERE i.id = d.id""")
        # attributions are derived and hold the address too
        await conn.execute("""
            DELETE FROM attributions a USING observations o
            WHERE a.observation_id = o.id AND o.redacted_at IS NOT NULL""")
        return report


async def _redacting_select(conn: Conn) -> str:
    """A SELECT of the observations in [$1, $2), columns in table order, due rows' personal fields blank."""
    columns = [r["attname"] for r in await conn.fetch(
        "SELECT attname FROM pg_attribute WHERE attrelid = 'observations'::regclass AND attnum > 0 "
        "AND NOT attisdropped ORDER BY attnum")]
    due = "(d.id IS NOT NULL AND o.redacted_at IS NULL)"
    blank = {c: f"CASE WHEN {due} THEN NULL ELSE o.{c} END" for c in PERSONAL}
    blank["redacted_at"] = f"CASE WHEN {due} THEN now() ELSE o.redacted_at END"
    # a hash join, not a lookup per row; incident windows of one address and target never overlap, so
    # an observation meets at most one due incident
    return (f"SELECT {', '.join(blank.get(c, f'o.{c}') for c in columns)} FROM observations o "
            "LEFT JOIN purge_due d ON o.target_id = d.target_id AND o.ip = d.ip AND o.observed_at >= d.window_start "
            "AND o.observed_at < d.window_end WHERE o.observed_at >= $1 AND o.observed_at < $2")
