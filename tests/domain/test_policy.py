"""The three-strike policy (pure), by property over random incident histories."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from tracker_watch.domain.policy import Incident, Strike, StrikePolicy, evaluate

T0 = datetime(2026, 1, 1, tzinfo=UTC)
POLICY = StrikePolicy()

histories = st.lists(st.integers(0, 900), max_size=40, unique=True).map(
    lambda days: [Incident(f"w/{d}", T0 + timedelta(days=d, hours=d % 24)) for d in days])
policies = st.builds(StrikePolicy, min_gap=st.integers(0, 30).map(lambda d: timedelta(days=d)),
                     level2_window=st.integers(30, 400).map(lambda d: timedelta(days=d)),
                     level3_window=st.integers(30, 400).map(lambda d: timedelta(days=d)),
                     referral_cooldown=st.integers(0, 400).map(lambda d: timedelta(days=d)))


def cycles(strikes: list[Strike]) -> dict[datetime, list[Strike]]:
    out: dict[datetime, list[Strike]] = {}
    for s in strikes:
        out.setdefault(s.cycle_start, []).append(s)
    return out


@given(histories, policies)
def test_levels_climb_one_at_a_time_within_a_cycle(history: list[Incident], p: StrikePolicy) -> None:
    for cycle in cycles(evaluate(history, p)).values():
        assert [s.level for s in cycle] == list(range(1, len(cycle) + 1))  # no 3 without a live 1 and 2
        assert cycle[0].issued_at == cycle[0].cycle_start


@given(histories, policies)
def test_never_two_strikes_closer_than_the_minimum_gap(history: list[Incident], p: StrikePolicy) -> None:
    strikes = evaluate(history, p)
    for a, b in itertools.pairwise(strikes):
        assert b.issued_at - a.issued_at >= p.min_gap


@given(histories, policies)
def test_escalation_only_within_its_window(history: list[Incident], p: StrikePolicy) -> None:
    for cycle in cycles(evaluate(history, p)).values():
        for a, b in itertools.pairwise(cycle):
            assert b.issued_at - a.issued_at <= (p.level2_window if a.level == 1 else p.level3_window)


@given(histories, st.data())
def test_voided_incidents_never_count(history: list[Incident], data: st.DataObject) -> None:
    if not history:
        return
    voided = frozenset(data.draw(st.lists(st.sampled_from([i.key for i in history]), max_size=5)))
    strikes = evaluate(history, POLICY, voided)
    assert not {s.incident for s in strikes} & voided
    assert strikes == evaluate([i for i in history if i.key not in voided], POLICY)


@given(histories, st.randoms(use_true_random=False))
def test_order_of_arrival_does_not_matter(history: list[Incident], rnd: random.Random) -> None:
    shuffled = list(history)
    rnd.shuffle(shuffled)
    assert evaluate(shuffled, POLICY) == evaluate(history, POLICY)


@settings(max_examples=50)
@given(histories)
def test_new_evidence_never_rewrites_earlier_strikes(history: list[Incident]) -> None:
    ordered = sorted(history, key=lambda i: i.at)
    final = evaluate(ordered, POLICY)
    for k in range(len(ordered)):
        partial = evaluate(ordered[:k], POLICY)
        assert final[:len(partial)] == partial  # incremental evaluation = rebuild from scratch


def test_the_three_strikes() -> None:
    days = [0, 3, 10, 30, 200]  # 3: too soon; 10: warning; 30: referral; 200: within cooldown
    strikes = evaluate([Incident(f"w/{d}", T0 + timedelta(days=d)) for d in days], POLICY)
    assert [(s.level, (s.issued_at - T0).days) for s in strikes] == [(1, 0), (2, 10), (3, 30)]


def test_outside_the_window_starts_over() -> None:
    strikes = evaluate([Incident("a", T0), Incident("b", T0 + timedelta(days=181))], POLICY)
    assert [(s.level, s.cycle_start) for s in strikes] == [(1, T0), (1, T0 + timedelta(days=181))]
    after_referral = evaluate([Incident(str(d), T0 + timedelta(days=d)) for d in (0, 10, 20, 300, 400)], POLICY)
    assert [s.level for s in after_referral] == [1, 2, 3, 1]  # 300 is within the cooldown, 400 is not
