"""The graduated-response policy: given a subject's incidents, which strikes follow. Pure and total.

An incident here is one (subject, work) pair within one evidence window that has evidence at or above
the minimum grade, in a covered jurisdiction, from no corrupt peer. Walking a subject's incidents in
time order:

* strike 1 (notification) on the first incident;
* strike 2 (warning) on an incident at least `min_gap` after strike 1 and within `level2_window` of it;
* strike 3 (referral) on an incident at least `min_gap` after strike 2 and within `level3_window` of it;
* an incident past the window starts a new cycle with strike 1; after a referral, incidents within
  `referral_cooldown` of it start nothing (the case is with the prosecutor), later ones a new cycle;
* an incident closer than `min_gap` to the last strike extends nothing and starts nothing.

A strike is dated by its incident, not by the clock, so evaluating the same history — all at once, in
pieces, or after a restart — always gives the same strikes. A voided strike's incident is disregarded
(the dispute was upheld) and everything after it is re-derived.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

LEVEL_NAMES = {1: "notification", 2: "warning", 3: "referral"}
LEVEL_TEXT = {
    1: "Strike 1 of 3 — notification: the subscriber is informed that the work was shared from their "
       "connection.",
    2: "Strike 2 of 3 — warning: the work was shared again after a notification; a further incident "
       "leads to a referral.",
    3: "Strike 3 of 3 — referral: the work was shared again after a warning; the case is referred for "
       "criminal proceedings.",
}


@dataclass(frozen=True)
class StrikePolicy:
    min_gap: timedelta = timedelta(days=7)
    level2_window: timedelta = timedelta(days=180)
    level3_window: timedelta = timedelta(days=365)
    referral_cooldown: timedelta = timedelta(days=365)


@dataclass(frozen=True)
class Incident:
    key: str  # stable identity, e.g. "<subject>/<work>/<window start>"
    at: datetime  # when it began (first sighting at or above the minimum grade)


@dataclass(frozen=True)
class Strike:
    level: int
    cycle_start: datetime  # when this cycle's strike 1 was issued: the cycle's identity
    issued_at: datetime  # the triggering incident's time
    incident: str  # key of the triggering incident


def evaluate(incidents: Iterable[Incident], policy: StrikePolicy, excluded: frozenset[str] = frozenset()) -> list[
        Strike]:
    """All strikes a subject's history leads to, oldest first."""
    strikes: list[Strike] = []
    for inc in sorted((i for i in incidents if i.key not in excluded), key=lambda i: (i.at, i.key)):
        last = strikes[-1] if strikes else None
        level = _next_level(last, inc.at, policy)
        if level is None:
            continue
        cycle = inc.at if level == 1 else last.cycle_start  # type: ignore[union-attr]
        strikes.append(Strike(level, cycle, inc.at, inc.key))
    return strikes


def _next_level(last: Strike | None, at: datetime, p: StrikePolicy) -> int | None:
    if last is None:
        return 1
    since = at - last.issued_at
    if since < p.min_gap:
        return None
    if last.level == 3:
        return 1 if since > p.referral_cooldown else None
    window = p.level2_window if last.level == 1 else p.level3_window
    return last.level + 1 if since <= window else 1
