"""Piece planning (pure)."""

from __future__ import annotations

import random
from datetime import date

from hypothesis import given
from hypothesis import strategies as st

from tracker_watch.swarm.planner import PiecePlanner

TODAY = date(2026, 11, 28)
A, B, C = ("10.0.0.1", 1), ("10.0.0.2", 2), ("10.0.0.3", 3)


def planner(**kw: object) -> PiecePlanner:
    return PiecePlanner(num_pieces=20, piece_size=lambda p: 65536, rng=random.Random(1), **kw)  # type: ignore[arg-type]


def test_nothing_is_wanted_without_candidates() -> None:
    p = planner()
    assert p.plan(TODAY, 0.0) == (set(), set())


def test_one_piece_per_candidate_then_nothing() -> None:
    p = planner()
    p.peer_seen(A, frozenset({3, 4}))
    add, _ = p.plan(TODAY, 0.0)
    assert len(add) == 1
    assert add <= {3, 4}
    piece = add.pop()
    p.settled(piece, True, [(A, 65536)], TODAY)
    add, _ = p.plan(TODAY, 0.0)
    assert (add, p.wanted) == (set(), set())
    assert not p.is_candidate(A, TODAY)
    assert p.is_candidate(A, date(2026, 11, 29))  # a new day, a new budget


def test_prefers_pieces_spent_peers_lack() -> None:
    p = planner()
    p.peer_seen(A, None)  # a seed
    p.settled(0, True, [(A, 65536)], TODAY)  # A is spent
    p.peer_seen(B, frozenset({1, 2, 3, 4, 5}))
    p.peer_seen(C, frozenset(range(20)))
    p.peers[A] = frozenset({1, 2, 3, 4})  # A lacks 5
    add, _ = p.plan(TODAY, 0.0)
    assert 5 in add


def test_sole_sender_of_a_bad_piece_is_corrupt_and_never_a_candidate() -> None:
    p = planner()
    p.peer_seen(A, None)
    p.settled(7, False, [(A, 65536)], TODAY)
    assert A[0] in p.corrupt
    assert p.plan(TODAY, 0.0)[0] == set()
    assert not p.is_candidate((A[0], 9999), TODAY)  # the IP lied: none of its ports is asked again
    p.peer_seen(B, None)
    p.settled(8, False, [(A, 16384), (B, 49152)], TODAY)
    assert B[0] not in p.corrupt


def test_dialling_wants_a_piece_once_per_redial_period_and_expires() -> None:
    p = planner()
    assert p.dialling_peer(A, TODAY, now=0.0)
    assert not p.dialling_peer(A, TODAY, now=1.0)
    assert len(p.plan(TODAY, 1.0)[0]) == 1
    assert p.plan(TODAY, 100.0)[1]  # grace over, nobody answered: stop wanting


def test_byte_caps() -> None:
    p = planner(bytes_per_ip_per_day=100_000, pieces_per_peer=10)
    p.peer_seen(A, None)
    p.settled(1, True, [(A, 65536)], TODAY)
    assert p.is_candidate(A, TODAY)
    p.settled(2, True, [(A, 65536)], TODAY)
    assert not p.is_candidate(A, TODAY)


@given(st.lists(st.tuples(st.sampled_from([A, B, C]), st.frozensets(st.integers(0, 19), min_size=1)), max_size=8),
       st.lists(st.tuples(st.integers(0, 19), st.booleans()), max_size=10))
def test_plans_respect_limits(seen: list[tuple[tuple[str, int], frozenset[int]]],
                              results: list[tuple[int, bool]]) -> None:
    p = planner()
    for peer, pieces in seen:
        p.peer_seen(peer, pieces)
    for piece, passed in results:
        p.plan(TODAY, 0.0)
        p.settled(piece, passed, [(A, 65536)], TODAY)
        add, drop = p.plan(TODAY, 0.0)
        assert len(p.wanted) <= p.max_wanted
        assert not (p.wanted & p.have)
        assert not (add & drop)
        # a peer alone among the holders of its pieces stays a candidate after its attempts (planner.is_candidate)
        candidates = [pcs for peer, pcs in p.peers.items() if p.is_candidate(peer, TODAY, alone=p._alone(peer))]
        assert all(any(pcs is None or w in pcs for pcs in candidates) for w in p.wanted)


def test_one_piece_per_candidate_so_each_can_supply_its_own() -> None:
    p = planner()
    for peer in (A, B, C):
        p.peer_seen(peer, None)
    add, _ = p.plan(TODAY, 0.0)
    assert len(add) == 3
    assert set(p.assigned.values()) == {A, B, C}


def test_a_candidate_that_never_delivers_rests_after_its_attempts() -> None:
    p = planner(max_attempts=2)
    p.peer_seen(A, None)
    p.peer_seen(B, None)
    p.settled(0, True, [(B, 65536)], TODAY)  # B is verified and spent
    for _ in range(2):
        add, _ = p.plan(TODAY, 0.0)
        [piece] = add
        assert p.assigned[piece] == A
        p.settled(piece, True, [(B, 65536)], TODAY)  # … but B keeps serving what was wanted for A
    assert not p.is_candidate(A, TODAY)
    assert p.plan(TODAY, 0.0) == (set(), set())


def test_a_dead_address_listed_again_and_again_costs_at_most_its_attempts() -> None:
    p = planner(max_attempts=2, redial_s=5.0)
    p.peer_seen(B, None)
    p.settled(0, True, [(B, 65536)], TODAY)  # B is verified and spent, and stays connected
    wanted_for_decoy = 0
    for announce in range(20):
        now = announce * 10.0
        if p.dialling_peer(C, TODAY, now):
            add, _ = p.plan(TODAY, now)
            for piece in add:
                wanted_for_decoy += 1
                p.settled(piece, True, [(B, 65536)], TODAY)  # … served by B, never by the decoy
        p.plan(TODAY, now + 40)  # the dial failed: grace over
    assert wanted_for_decoy == 2


def test_a_peer_alone_gets_a_fresh_chance() -> None:
    p = planner(max_attempts=1)
    p.peer_seen(A, None)
    p.peer_seen(B, None)
    p.settled(0, True, [(B, 65536)], TODAY)
    [piece] = p.plan(TODAY, 0.0)[0]
    p.settled(piece, True, [(B, 65536)], TODAY)  # A's one attempt went to B
    assert p.plan(TODAY, 0.0)[0] == set()
    p.peer_gone(B)  # with B gone only A can serve a piece wanted for A
    assert len(p.plan(TODAY, 0.0)[0]) == 1


def test_a_failed_dial_keeps_the_peer_and_its_piece() -> None:
    """libtorrent's first way in may fail (uTP, MSE) before the next one connects: nothing flaps meanwhile."""
    p = planner()
    assert p.dialling_peer(A, TODAY, now=0.0)
    p.peer_seen(B, None)
    wanted = p.plan(TODAY, 1.0)[0]
    assert len(wanted) == 2
    p.peer_gone(A, dial_failed=True)
    p.peer_gone(B, dial_failed=True)  # a second connection attempt to a connected peer failed
    assert p.plan(TODAY, 2.0) == (set(), set())
    assert p.wanted == wanted
    p.peer_gone(B)  # a connection that ends is another matter
    assert len(p.plan(TODAY, 3.0)[1]) == 1


def test_an_address_that_never_answers_cannot_hold_a_piece_by_being_listed_again() -> None:
    """Listed more often than its grace lasts (redial_s < dial_grace_s), and nobody else serves its piece: the
    grace is not renewed while it runs, and each grace that ends unanswered costs an attempt."""
    p = planner(max_attempts=2, redial_s=5.0, dial_grace_s=30.0)
    p.peer_seen(B, frozenset({0}))
    p.settled(0, True, [(B, 65536)], TODAY)  # B is verified and spent; it has nothing wanted for C
    now, held_until = 0.0, 0.0
    while now < 600.0:
        if p.dialling_peer(C, TODAY, now):
            p.plan(TODAY, now)
        if C in p.assigned.values():
            held_until = now
        p.plan(TODAY, now)
        now += 3.0
    assert p._ip(C[0], TODAY).attempts == 2
    assert held_until < 2 * (30.0 + 5.0)  # two graces, then it rests
    assert not p.wanted
