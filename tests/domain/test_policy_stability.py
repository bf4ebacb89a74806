"""Issued strikes are stable: late evidence adds, never swaps; a void sticks. By property over random
incident streams (arriving in random batches and order) interleaved with voids and deliveries."""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from tracker_watch.domain.policy import Incident, Strike, StrikePolicy, evaluate, plan

T0 = datetime(2026, 1, 1, tzinfo=UTC)
POLICY = StrikePolicy()


def incident(work: int, day: int, ms: int = 0) -> Incident:
    window = T0 + timedelta(days=day)
    return Incident(f"{work}/{window.isoformat()}", window + timedelta(milliseconds=ms), window)


@dataclass
class Ledger:
    """The ledger's bookkeeping around the pure plan, in memory: strikes are rows with ids, one notice each."""

    incidents: dict[str, Incident] = field(default_factory=dict)
    active: dict[Strike, int] = field(default_factory=dict)
    voided: set[datetime] = field(default_factory=set)
    notice: dict[int, str] = field(default_factory=dict)  # strike id → pending | delivered | cancelled
    deliveries: dict[int, int] = field(default_factory=dict)
    withdrawals: dict[int, int] = field(default_factory=dict)

    def evaluate(self) -> tuple[Strike, ...]:
        p = plan(self.incidents.values(), POLICY, self.active, frozenset(self.voided))
        for s in p.withdraw:
            self.retire(self.active.pop(s))
        assert set(p.keep) == set(self.active)
        for s in p.add:
            self.active[s] = len(self.notice) + 1
            self.notice[self.active[s]] = "pending"
        return p.withdraw

    def retire(self, strike_id: int) -> None:
        if self.notice[strike_id] == "delivered":
            self.withdrawals[strike_id] = self.withdrawals.get(strike_id, 0) + 1
        self.notice[strike_id] = "cancelled"

    def void(self, s: Strike) -> None:
        self.retire(self.active.pop(s))
        self.voided.add(self.incidents[s.incident].window)  # type: ignore[arg-type]
        self.evaluate()

    def deliver(self) -> None:
        for strike_id, state in self.notice.items():
            if state == "pending":
                self.notice[strike_id] = "delivered"
                self.deliveries[strike_id] = self.deliveries.get(strike_id, 0) + 1


incidents = st.builds(incident, st.integers(0, 2), st.integers(0, 420), st.integers(0, 3))
steps = st.lists(st.one_of(
    st.tuples(st.just("arrive"), st.lists(incidents, min_size=1, max_size=6)),
    st.tuples(st.just("void"), st.integers(0, 10)),
    st.tuples(st.just("deliver"), st.just(0))), max_size=25)


def run(stream: list[tuple[str, object]], rnd: random.Random) -> Ledger:
    ledger = Ledger()
    for kind, arg in stream:
        if kind == "arrive":
            batch = list(arg)  # type: ignore[call-overload]
            rnd.shuffle(batch)
            for i in batch:
                ledger.incidents.setdefault(i.key, i)
            assert ledger.evaluate() == (), "new evidence withdrew an issued strike"
        elif kind == "void" and ledger.active:
            ledger.void(list(ledger.active)[int(arg) % len(ledger.active)])  # type: ignore[call-overload]
        elif kind == "deliver":
            ledger.deliver()
    return ledger


@settings(max_examples=300)
@given(steps, st.randoms(use_true_random=False))
def test_streams_and_voids(stream: list[tuple[str, object]], rnd: random.Random) -> None:
    ledger = run(stream, rnd)
    # no notice is delivered twice for one strike, and a delivered one that lost its strike is withdrawn once
    assert all(n == 1 for n in ledger.deliveries.values())
    assert all(n == 1 for n in ledger.withdrawals.values())
    standing = set(ledger.active.values())
    for strike_id in ledger.notice:
        if strike_id not in standing and ledger.deliveries.get(strike_id):
            assert ledger.withdrawals.get(strike_id) == 1
    # no voided evidence escalates: no standing strike, and none issued since, rests on a voided window
    windows = {k: i.window for k, i in ledger.incidents.items()}
    assert not {windows[s.incident] for s in ledger.active} & ledger.voided
    # a rebuild (the same plan over everything, with the issued strikes) changes nothing
    again = plan(ledger.incidents.values(), POLICY, ledger.active, frozenset(ledger.voided))
    assert (again.withdraw, again.add) == ((), ())
    assert list(again.keep) == sorted(ledger.active, key=lambda s: (s.issued_at, s.incident))
    # and what stands is still a well-formed ladder
    for a, b in itertools.pairwise(again.keep):
        assert b.issued_at - a.issued_at >= POLICY.min_gap
        assert b.level == 1 or (b.level == a.level + 1 and b.cycle_start == a.cycle_start)


@given(st.lists(incidents, max_size=30), st.randoms(use_true_random=False))
def test_one_batch_is_the_plain_evaluation_in_any_order(history: list[Incident], rnd: random.Random) -> None:
    unique = list({i.key: i for i in history}.values())
    shuffled = list(unique)
    rnd.shuffle(shuffled)
    assert list(plan(shuffled, POLICY).add) == evaluate(unique, POLICY)


def test_a_tie_arriving_later_does_not_replace_an_issued_strike() -> None:
    a, b = incident(1, 0, ms=1), incident(2, 0, ms=0)  # b is 1 ms earlier, and arrives a minute later
    first = plan([a], POLICY)
    assert [s.incident for s in first.add] == [a.key]
    later = plan([a, b], POLICY, first.add)
    assert (later.keep, later.withdraw, later.add) == (first.add, (), ())
    # had both arrived together, the earlier would have won: the order is by first sighting, then key
    assert [s.incident for s in plan([b, a], POLICY).add] == [b.key]
    c = incident(3, 0, ms=0)  # same millisecond as b: the lower key wins
    assert [s.incident for s in plan([c, b], POLICY).add] == [min(b.key, c.key)]


def test_late_evidence_before_the_last_strike_starts_nothing_before_it() -> None:
    issued = plan([incident(1, 0), incident(1, 20)], POLICY).add
    assert [s.level for s in issued] == [1, 2]
    late = plan([incident(1, 0), incident(1, 20), incident(2, 10), incident(2, 30)], POLICY, issued)
    assert (late.withdraw, [(s.level, s.issued_at) for s in late.add]) == ((), [(3, T0 + timedelta(days=30))])


def test_a_void_sticks_for_the_whole_window() -> None:
    a, b = incident(1, 0, ms=0), incident(2, 0, ms=5)  # two works shared the same day
    (strike,) = plan([a, b], POLICY).add
    after = plan([a, b], POLICY, (), frozenset({a.window}))  # type: ignore[arg-type]
    assert after == plan([], POLICY)  # b, the same day, starts nothing
    assert strike.incident == a.key


def test_a_void_re_derives_what_followed_it_explicitly() -> None:
    history = [incident(1, 0), incident(1, 8), incident(1, 20)]
    one, two, three = plan(history, POLICY).add
    after = plan(history, POLICY, (two, three), frozenset({T0}))
    assert after.keep == ()
    assert after.withdraw == (two, three)  # each withdrawn, its delivered notice retracted
    assert [(s.level, (s.issued_at - T0).days) for s in after.add] == [(1, 8), (2, 20)]
    middle = plan(history, POLICY, (one, three), frozenset({T0 + timedelta(days=8)}))
    assert (middle.keep, middle.withdraw, [s.level for s in middle.add]) == ((one,), (three,), [2])
