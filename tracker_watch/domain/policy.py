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

A strike is dated by its incident, not by the clock. Incidents are taken in a fixed order: by their first
sighting (to the millisecond), ties broken by the incident key.

Issued strikes are stable (`plan`): the strikes already issued to a subject stand, and evaluation only
adds strikes after the last of them. Evidence that arrives late — an incident earlier than, or at the
same millisecond as, a strike already issued — never replaces that strike; it starts nothing before the
last standing strike. Only when a standing strike stops following from the evidence (it was voided, so
every incident of the subject in its window is disregarded; or its own incident no longer counts) is
what follows it re-derived: strikes that still follow stand, the others are withdrawn, and new ones may
be added — never a silent swap. Evaluating a history in one go gives the same strikes as `evaluate`.
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
    window: datetime | None = None  # start of its evidence window: a void disregards the whole window


@dataclass(frozen=True)
class Strike:
    level: int
    cycle_start: datetime  # when this cycle's strike 1 was issued: the cycle's identity
    issued_at: datetime  # the triggering incident's time
    incident: str  # key of the triggering incident


@dataclass(frozen=True)
class Plan:
    """What an evaluation does to a subject's strikes."""

    keep: tuple[Strike, ...]  # issued strikes that stand
    withdraw: tuple[Strike, ...]  # issued strikes that no longer follow from the evidence: withdraw their notices
    add: tuple[Strike, ...]  # new strikes, oldest first


def evaluate(incidents: Iterable[Incident], policy: StrikePolicy, excluded: frozenset[str] = frozenset()) -> list[
        Strike]:
    """All strikes a subject's history leads to when nothing was issued yet, oldest first."""
    return list(plan([i for i in incidents if i.key not in excluded], policy).add)


def plan(incidents: Iterable[Incident], policy: StrikePolicy, issued: Iterable[Strike] = (),
         voided_windows: frozenset[datetime] = frozenset()) -> Plan:
    """Extend the issued (active) strikes with what the incidents lead to; see the module docstring."""
    valid = {i.key: i for i in incidents if i.window is None or i.window not in voided_windows}
    standing = sorted(issued, key=_order)
    keep = _standing(valid, standing, policy)
    rest = {s.incident: s for s in standing[len(keep):]}
    last = keep[-1] if keep else None
    # an incident that already triggered a strike keeps that strike's date, so a re-evaluation sees the same
    taken = {s.incident for s in keep}
    after = sorted((rest[k].issued_at if k in rest else i.at, k) for k, i in valid.items() if k not in taken)
    if last is not None:
        after = [x for x in after if x > _order(last)]
    kept_again: list[Strike] = []
    add: list[Strike] = []
    for at, key in after:
        level = _next_level(last, at, policy)
        if level is None:
            continue
        cycle = at if level == 1 or last is None else last.cycle_start
        old = rest.get(key)
        if old is not None and (old.level, old.cycle_start) == (level, cycle):
            last = old
            kept_again.append(old)
        else:
            last = Strike(level, cycle, at, key)
            add.append(last)
    withdraw = tuple(s for s in standing[len(keep):] if s not in kept_again)
    return Plan(tuple(keep) + tuple(kept_again), withdraw, tuple(add))


def horizon(issued: Iterable[Strike], policy: StrikePolicy) -> datetime | None:
    """The first sighting before which no incident can change the plan, while every issued strike stands
    (`settled`); None when nothing is issued (then every incident matters).

    An incident after the last strike leads to nothing when it comes within `min_gap` of it (or, after a
    referral, within `referral_cooldown`), and the walk only moves on at a strike, so the incidents before
    the horizon all come first and change nothing. With every issued strike standing, `plan` over the issued
    strikes' own incidents and those sighted at or after the horizon is `plan` over all of them: a tick
    needs only those of a subject's history (tests/domain/test_policy_horizon.py)."""
    last = max(issued, key=_order, default=None)
    if last is None:
        return None
    return last.issued_at + (max(policy.min_gap, policy.referral_cooldown) if last.level == 3 else policy.min_gap)


def settled(incidents: Iterable[Incident], policy: StrikePolicy, issued: Iterable[Strike] = (),
            voided_windows: frozenset[datetime] = frozenset()) -> bool:
    """Whether every issued strike stands: its incident counts and it follows its predecessor. Only the
    issued strikes' own incidents are needed to tell."""
    valid = {i.key: i for i in incidents if i.window is None or i.window not in voided_windows}
    standing = sorted(issued, key=_order)
    return len(_standing(valid, standing, policy)) == len(standing)


def _standing(valid: dict[str, Incident], standing: list[Strike], policy: StrikePolicy) -> list[Strike]:
    """The issued strikes (in order) that stand, up to the first that does not."""
    keep: list[Strike] = []
    for s in standing:
        if s.incident not in valid or not _follows(keep[-1] if keep else None, s, policy):
            break
        keep.append(s)
    return keep


def _order(s: Strike) -> tuple[datetime, str]:
    return s.issued_at, s.incident


def _follows(last: Strike | None, s: Strike, p: StrikePolicy) -> bool:
    """Whether an issued strike still follows its predecessor, as the walk would have made it."""
    if _next_level(last, s.issued_at, p) != s.level:
        return False
    return s.cycle_start == (s.issued_at if s.level == 1 or last is None else last.cycle_start)


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
