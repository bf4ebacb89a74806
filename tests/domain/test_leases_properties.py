"""Properties of the lease parser: no traceback on any input, and the sweep agrees with a pairwise check."""

from __future__ import annotations

import contextlib
import ipaddress
import re
from array import array

from hypothesis import given, settings
from hypothesis import strategies as st

from tracker_watch.domain import lease_overlaps
from tracker_watch.domain.leases import LeaseErrors, parse

HEAD = b"prefix,port_from,port_to,valid_from,valid_to,subscriber\n"
ERROR_LINE = re.compile(r"line \d+: .+|stopped after \d+ errors")

# fragments that reach every branch of the row parser when glued together at random
FRAGMENTS = st.sampled_from([
    b"10.0.0.1", b"10.0.0.0/24", b"/", b"/33", b"::ffff:", b"2001:db8::/48", b"::", b"%", b",", b",,", b'"',
    b"2026-01-01", b"T00:00:00", b"Z", b"+05:00", b"0001-01-01", b"9999-12-31", b"65535", b"70000", b"0",
    "\u0663".encode(), "\uff11".encode(), b"\xff", b"\x00", b"\r", b"\n", b"\xef\xbb\xbf", b" ", b"\\", b"S"])


def _only_lease_errors(data: bytes) -> None:
    message = ""
    try:
        parse(data)
    except LeaseErrors as exc:  # anything else (a traceback) fails the test
        message = str(exc)
    assert all(ERROR_LINE.fullmatch(line) for line in message.splitlines()), message


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_raise_anything_but_lease_errors(body: bytes) -> None:
    _only_lease_errors(HEAD + body)
    _only_lease_errors(body)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(FRAGMENTS, max_size=12).map(b"".join), max_size=8))
def test_near_miss_rows_never_raise_anything_but_lease_errors(rows: list[bytes]) -> None:
    _only_lease_errors(HEAD + b"\n".join(rows))


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_never_raises_anything_but_lease_errors(body: str) -> None:
    with contextlib.suppress(LeaseErrors):
        parse(HEAD.decode() + body)


# small universes so that collisions are frequent: nested prefixes, overlapping port ranges and times
PREFIXES = [ipaddress.ip_network(p) for p in
            ("10.0.0.0/30", "10.0.0.0/31", "10.0.0.2/31", "10.0.0.1/32", "10.0.0.2/32", "10.0.0.4/32",
             "2001:db8::/126", "2001:db8::1/128")]
LEASE = st.tuples(st.sampled_from(PREFIXES), st.integers(0, 6), st.integers(0, 3), st.integers(0, 10),
                  st.integers(1, 4))


def _rows(leases: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, int, int, int, int]]) -> array[int]:
    rows = array("Q")
    for line, (prefix, port, width, start, length) in enumerate(leases, start=2):
        net = int(prefix.network_address)
        rows.extend((line, prefix.version, net >> 64, net & (1 << 64) - 1, prefix.prefixlen, port, port + width,
                     start, start + length))
    return rows


def _meet(a: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, int, int, int, int],
          b: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, int, int, int, int]) -> bool:
    return (a[0].version == b[0].version and a[0].overlaps(b[0])
            and a[1] <= b[1] + b[2] and b[1] <= a[1] + a[2] and a[3] < b[3] + b[4] and b[3] < a[3] + a[4])


@settings(max_examples=500, deadline=None)
@given(st.lists(LEASE, max_size=25))
def test_sweep_finds_an_overlap_exactly_when_a_pairwise_check_does(leases: list) -> None:  # type: ignore[type-arg]
    found = lease_overlaps.overlaps(_rows(leases), limit=1000)
    pairwise = any(_meet(a, b) for i, a in enumerate(leases) for b in leases[i + 1:])
    assert bool(found) == pairwise
    for line, other in found:  # every pair reported does overlap
        assert _meet(leases[line - 2], leases[other - 2])
    # leaving out the first lease of each pair leaves a set without overlaps (the sweep's sound set)
    kept = [x for n, x in enumerate(leases, start=2) if n not in {line for line, _ in found}]
    assert not any(_meet(a, b) for i, a in enumerate(kept) for b in kept[i + 1:])
