"""Magnet `x.pe` peer hints: literal addresses kept, names never resolved, and the same addresses
libtorrent's own parse_magnet_uri finds (differential)."""

from __future__ import annotations

import ipaddress
import urllib.parse

import libtorrent as lt
from hypothesis import given, settings
from hypothesis import strategies as st

from tracker_watch.domain.evidence import normalize_ip
from tracker_watch.domain.targets import MAX_PEER_HINTS, hint_endpoint, parse_peer_hints, parse_target

XT = "magnet:?xt=urn:btih:" + "ab" * 20


def test_literal_addresses_kept_names_ignored_and_counted() -> None:
    spec = parse_target(XT + "&x.pe=127.0.0.2:6881&x.pe=[::1]:7000&x.pe=tracker.example:80&x.pe=1.2.3.4"
                        "&x.pe=127.0.0.2:6881&x.pe=[::ffff:127.0.0.3]:5&x.pe=::1:80&x.pe=1.2.3.4:0")
    assert spec.peer_hints == ("127.0.0.2:6881", "[::1]:7000", "127.0.0.3:5")
    assert spec.ignored_peer_hints == 4  # the name, the missing port, the unbracketed IPv6, port 0
    assert [hint_endpoint(h) for h in spec.peer_hints] == [("127.0.0.2", 6881), ("::1", 7000), ("127.0.0.3", 5)]
    assert parse_target(XT).peer_hints == ()


def test_hints_are_bounded() -> None:
    hints, ignored = parse_peer_hints([f"127.0.1.{i}:1" for i in range(MAX_PEER_HINTS + 7)])
    assert len(hints) == MAX_PEER_HINTS
    assert ignored == 7


def test_scoped_ipv6_is_ignored() -> None:
    assert parse_peer_hints(["[fe80::1%eth0]:5"]) == ((), 1)


def _lt_peers(magnet: str) -> set[tuple[str, int]]:
    out = set()
    for ip, port in lt.parse_magnet_uri(magnet).peers:
        if "%" in ip:  # we ignore scoped addresses (a zone names one of *our* interfaces)
            continue
        out.add((normalize_ip(ip), int(port)))
    return out


_octet = st.integers(0, 255).map(str)
_v4 = st.tuples(_octet, _octet, _octet, _octet).map(".".join)
_v6 = st.ip_addresses(v=6).map(lambda a: f"[{a}]")
_name = st.from_regex(r"[a-z][a-z0-9-]{0,10}(\.[a-z]{2,5}){1,2}", fullmatch=True)
_port = st.one_of(st.integers(0, 70000).map(str), st.sampled_from(["", "05", "x", "-1", "+5"]))
_hint = st.one_of(
    st.tuples(st.one_of(_v4, _v6, _name, st.ip_addresses(v=6).map(str)), _port).map(lambda t: f"{t[0]}:{t[1]}"),
    _v4, st.text(max_size=12))


@settings(max_examples=400, deadline=None)
@given(st.lists(_hint, max_size=6))
def test_same_addresses_as_libtorrent(values: list[str]) -> None:
    magnet = XT + "".join("&x.pe=" + urllib.parse.quote(v, safe=":[]") for v in values)
    ours = {(normalize_ip(ip), port) for ip, port in map(hint_endpoint, parse_target(magnet).peer_hints)}
    assert ours == _lt_peers(magnet)
    for ip, _ in ours:
        ipaddress.ip_address(ip)  # never a name
