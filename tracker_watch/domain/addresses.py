"""Which peer and tracker addresses we may dial and record: global unicast only, unless settings say so. Pure.

A tracker, the DHT or a peer (PEX) can name any address. Dialling whatever they list would let a hostile
one make the monitor probe internal networks (10/8, 169.254.169.254, 127.0.0.1:5432 …) and fill the
evidence with addresses no ISP can act on. So an address is refused when it lies in a special-purpose
range (RFC 6890 and its IANA registries: private, loopback, link-local, carrier-grade NAT, multicast,
documentation, reserved, …); networks named in the settings are allowed again (local test swarms, labs),
networks the operator denies are refused even when global, and the monitor's own addresses never are
peers. The same ordered rules feed libtorrent's IP filter, so what libtorrent dials by itself (PEX peers)
obeys them too.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Not global unicast. IPv6: everything outside 2000::/3 is refused wholesale (see _BASE_RULES).
SPECIAL_V4 = (
    "0.0.0.0/8",        # "this network"
    "10.0.0.0/8",       # private
    "100.64.0.0/10",    # carrier-grade NAT (shared address space)
    "127.0.0.0/8",      # loopback
    "169.254.0.0/16",   # link-local (and cloud metadata services)
    "172.16.0.0/12",    # private
    "192.0.0.0/24",     # IETF protocol assignments
    "192.0.2.0/24",     # documentation
    "192.88.99.0/24",   # 6to4 relay anycast (deprecated)
    "192.168.0.0/16",   # private
    "198.18.0.0/15",    # benchmarking
    "198.51.100.0/24",  # documentation
    "203.0.113.0/24",   # documentation
    "224.0.0.0/4",      # multicast
    "240.0.0.0/4",      # reserved, and 255.255.255.255 broadcast
)
SPECIAL_V6_IN_GLOBAL = (
    "2001::/23",        # IETF protocol assignments (Teredo 2001::/32 included)
    "2001:db8::/32",    # documentation
    "2002::/16",        # 6to4: checked by the IPv4 address it embeds, see _embedded_v4
    "3fff::/20",        # documentation
)


class AddressPolicyError(ValueError):
    """A network in the settings is not CIDR notation."""


def parse_networks(key: str, items: Iterable[str]) -> tuple[IPNetwork, ...]:
    """CIDR text (or a bare address, meaning one host) into networks; the error names the settings key."""
    out = []
    for item in items:
        try:
            out.append(ipaddress.ip_network(item.strip(), strict=True))
        except ValueError as exc:
            raise AddressPolicyError(f"{key}: {item!r} is not a network in CIDR notation ({exc})") from None
    return tuple(out)


_BASE_RULES: tuple[tuple[IPNetwork, bool], ...] = (
    *((ipaddress.ip_network(n), False) for n in SPECIAL_V4),
    (ipaddress.ip_network("::/0"), False),
    (ipaddress.ip_network("2000::/3"), True),
    *((ipaddress.ip_network(n), False) for n in SPECIAL_V6_IN_GLOBAL),
)


@dataclass(frozen=True)
class AddressPolicy:
    """Ordered rules (network, allowed); the last rule that contains an address decides. Default: allowed."""

    allowed: tuple[IPNetwork, ...] = ()
    denied: tuple[IPNetwork, ...] = ()
    rules: tuple[tuple[IPNetwork, bool], ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        rules = _BASE_RULES + tuple((n, True) for n in self.allowed) + tuple((n, False) for n in self.denied)
        object.__setattr__(self, "rules", rules)

    @classmethod
    def from_settings(cls, allowed: Iterable[str], denied: Iterable[str] = ()) -> AddressPolicy:
        return cls(parse_networks("swarm.allowed_networks", allowed), parse_networks("swarm.denied_networks", denied))

    def allows(self, ip: str | IPAddress, own: frozenset[str] | set[str] = frozenset()) -> bool:
        """May we dial and record this address? Unparseable text and our own addresses never."""
        try:
            addr = ipaddress.ip_address(ip.strip("[]") if isinstance(ip, str) else ip)
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.scope_id:
            return False  # a zone index only makes sense on our own link
        embedded = _embedded_v4(addr)
        if embedded is not None:
            addr = embedded
        if str(addr) in own and not self._explicitly_allowed(addr):
            return False  # a lister naming us would have us dial our own services; labs allow theirs
        return self._rule_for(addr)

    def _explicitly_allowed(self, addr: IPAddress) -> bool:
        return any(addr.version == n.version and addr in n for n in self.allowed)

    def own_blocks(self, own: Iterable[str]) -> list[str]:
        """Our own addresses that the IP filter must block as well (those not allowed explicitly)."""
        out = []
        for ip in own:
            try:
                addr = ipaddress.ip_address(ip)
            except ValueError:
                continue
            if not self._explicitly_allowed(addr):
                out.append(str(addr))
        return out

    def _rule_for(self, addr: IPAddress) -> bool:
        for network, allowed in reversed(self.rules):
            if addr.version == network.version and addr in network:
                return allowed
        return True

    def filter_ranges(self) -> list[tuple[str, str, bool]]:
        """(first, last, blocked) in order, for libtorrent's ip_filter (later rules override earlier ones).

        The filter cannot look inside IPv4-mapped, NAT64 and 6to4 addresses as `allows` does; it blocks
        them all (libtorrent speaks plain IPv4 to IPv4 peers, so only a lister would name them).
        """
        return [(str(n[0]), str(n[-1]), not allowed) for n, allowed in self.rules]


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _embedded_v4(addr: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address inside an IPv4-mapped, NAT64 (64:ff9b::/96) or 6to4 address: that is where it goes."""
    if not isinstance(addr, ipaddress.IPv6Address):
        return None
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    if addr.sixtofour is not None:
        return addr.sixtofour
    if addr in _NAT64:
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    return None


STRICT = AddressPolicy()
LOOPBACK_NETWORKS = ("127.0.0.0/8", "::1/128")
