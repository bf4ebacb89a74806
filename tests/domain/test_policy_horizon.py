"""`policy.horizon` and `policy.settled`: while every issued strike stands, planning from the strikes' own
incidents and those at or after the horizon gives the plan that all incidents give (the tick reads no more)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from tracker_watch.domain.policy import Incident, Strike, StrikePolicy, horizon, plan, settled

T0 = datetime(2026, 1, 1, tzinfo=UTC)

# (work, day, ms): days over more than two years, so cycles restart and referrals cool down
sightings = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 800), st.integers(0, 3)), max_size=30)
# days after the last issued strike: around its min_gap and cooldown, where the horizon lies
near = st.lists(st.tuples(st.integers(0, 2), st.sampled_from([-1, 0, 1, 5, 6, 7, 8, 9, 29, 30, 31, 364, 365, 366]),
                          st.integers(0, 3)), max_size=4)
policies = st.sampled_from([StrikePolicy(), StrikePolicy(min_gap=timedelta(days=30), referral_cooldown=timedelta(
    days=10)), StrikePolicy(min_gap=timedelta(0), level2_window=timedelta(days=20), level3_window=timedelta(days=40))])


def incidents(seen: list[tuple[int, int, int]]) -> list[Incident]:
    out: dict[str, Incident] = {}
    for work, day, ms in seen:
        window = T0 + timedelta(days=day)
        key = f"{work}/{window.isoformat()}"
        at = window + timedelta(milliseconds=ms)
        if key not in out or at < out[key].at:
            out[key] = Incident(key, at, window)
    return list(out.values())


def subset(all_: list[Incident], issued: list[Strike], policy: StrikePolicy) -> list[Incident]:
    since = horizon(issued, policy)
    keys = {s.incident for s in issued}
    return [i for i in all_ if since is None or i.at >= since or i.key in keys]


@settings(max_examples=400, deadline=None)
@given(sightings, sightings, sightings, near, st.sets(st.integers(0, 800), max_size=3), st.integers(0, 6), policies)
def test_planning_from_the_horizon_is_planning_from_everything(
        first: list[tuple[int, int, int]], second: list[tuple[int, int, int]], third: list[tuple[int, int, int]],
        close: list[tuple[int, int, int]], voided_days: set[int], dropped: int, policy: StrikePolicy) -> None:
    # strikes issued as ticks issue them: each batch planned with the strikes before it (late evidence included)
    issued: list[Strike] = []
    seen: list[tuple[int, int, int]] = []
    for batch in (first, second):
        seen += batch
        issued += plan(incidents(seen), policy, issued).add
    if issued:
        last = (max(s.issued_at for s in issued) - T0).days
        third = third + [(work, last + days, ms) for work, days, ms in close]
    everything = incidents(seen + third)
    voided = frozenset(T0 + timedelta(days=d) for d in voided_days)
    if dropped and everything:  # an incident that stops counting (a corrupt peer in its window)
        everything.pop(dropped % len(everything))
    part = subset(everything, issued, policy)
    assert settled(part, policy, issued, voided) == settled(everything, policy, issued, voided)
    if settled(everything, policy, issued, voided):
        assert plan(part, policy, issued, voided) == plan(everything, policy, issued, voided)


def test_nothing_issued_means_every_incident_matters() -> None:
    assert horizon([], StrikePolicy()) is None


def test_after_a_referral_the_horizon_is_the_cooldown() -> None:
    referral = Strike(3, T0, T0 + timedelta(days=20), "0/x")
    assert horizon([referral], StrikePolicy()) == T0 + timedelta(days=20 + 365)
    warning = Strike(2, T0, T0 + timedelta(days=20), "0/y")
    assert horizon([warning], StrikePolicy()) == T0 + timedelta(days=27)
