"""All Prometheus metrics, in one place, named by Prometheus conventions (tracker_watch_ prefix, base
units, _total counters). Labels never carry an IP, an infohash or a tenant's name: those live in
PostgreSQL, and would make the series count grow without bound.
"""

from __future__ import annotations

from prometheus_client import Counter

EVIDENCE_OUT_OF_JURISDICTION = Counter(
    "tracker_watch_evidence_out_of_jurisdiction_total",
    "Observations at or above the minimum grade from addresses outside the configured jurisdictions "
    "(kept, but starting no strike).")
STRIKES_ISSUED = Counter("tracker_watch_strikes_issued_total", "Strikes issued.", ["level"])
STRIKES_SUPERSEDED = Counter("tracker_watch_strikes_superseded_total",
                             "Strikes withdrawn because re-evaluation no longer yields them (after a void).")
NOTICES_DELIVERED = Counter("tracker_watch_notices_delivered_total", "Notices delivered to ISPs.")
NOTICE_DELIVERY_FAILURES = Counter("tracker_watch_notice_delivery_failures_total",
                                   "Failed notice delivery attempts.", ["final"])
