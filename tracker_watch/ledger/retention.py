"""Retention: IP addresses are personal data. Evidence that never led to a strike is redacted after
`evidence.retention_days`: its personal fields are blanked, its hashes stay, so `ledger verify` still
passes and reports the rows as redacted. Incidents something relies on carry `legal_hold` and are kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from tracker_watch.ledger.db import Conn

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


async def purge(conn: Conn, cutoff: datetime, window_s: int, dry_run: bool) -> PurgeReport:
    async with conn.transaction():
        await conn.execute(f"CREATE TEMP TABLE purge_due ON COMMIT DROP AS {_DUE}", cutoff, float(window_s))
        counts = await conn.fetchrow("""
            SELECT (SELECT count(*) FROM purge_due) AS incidents,
                   (SELECT count(*) FROM observations o JOIN purge_due d ON o.target_id = d.target_id
                        AND o.ip = d.ip AND o.observed_at >= d.window_start AND o.observed_at < d.window_end
                    WHERE o.redacted_at IS NULL) AS observations,
                   (SELECT count(*) FROM incident_changes c JOIN purge_due d ON c.incident_id = d.id
                    WHERE c.redacted_at IS NULL) AS incident_changes""")
        assert counts is not None
        report = PurgeReport(counts["incidents"], counts["observations"], counts["incident_changes"], dry_run)
        if dry_run:
            return report
        # the append-only triggers let exactly this through: personal fields blanked, redacted_at set
        await conn.execute("SET LOCAL tracker_watch.redact = 'on'")
        await conn.execute("""
            UPDATE observations o SET ip = NULL, port = NULL, peer_id = NULL, client = NULL, redacted_at = now()
            FROM purge_due d WHERE o.target_id = d.target_id AND o.ip = d.ip AND o.observed_at >= d.window_start
              AND o.observed_at < d.window_end AND o.redacted_at IS NULL""")
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
