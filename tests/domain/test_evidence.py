from __future__ import annotations

import pytest

from tracker_watch.domain.evidence import Grade, Source, normalize_ip, source_from_lt_bits


def test_grades_are_ordered_and_corrupt_never_counts() -> None:
    order = [Grade.LISTED, Grade.HANDSHAKE, Grade.ADVERTISED, Grade.VERIFIED]
    assert [g.rank for g in order] == sorted(g.rank for g in order)
    assert all(not Grade.CORRUPT.at_least(g) for g in order)
    assert Grade.VERIFIED.at_least(Grade.LISTED)


@pytest.mark.parametrize(("raw", "canonical"), [
    ("::ffff:1.2.3.4", "1.2.3.4"),
    ("[2001:db8::1]", "2001:db8::1"),
    ("2001:0db8:0000::0001", "2001:db8::1"),
    ("127.0.0.11", "127.0.0.11"),
])
def test_addresses_are_normalised(raw: str, canonical: str) -> None:
    assert normalize_ip(raw) == canonical


def test_sources() -> None:
    assert source_from_lt_bits(1, incoming=False) is Source.TRACKER
    assert source_from_lt_bits(4 | 2, incoming=False) is Source.DHT
    assert source_from_lt_bits(1, incoming=True) is Source.INCOMING
