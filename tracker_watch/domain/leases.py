"""ISP lease data: which subscriber had which address (and, behind carrier-grade NAT, which ports) when.

CSV, one lease per line after a header:  prefix,port_from,port_to,valid_from,valid_to,subscriber
  prefix      an IP address or CIDR prefix (203.0.113.7, 100.64.0.0/10, 2001:db8::/48)
  port_from/to an inclusive port range for CGNAT; both empty for every port
  valid_from  ISO-8601 time (UTC when no zone is given); valid_to the same, exclusive, or empty for open
  subscriber  the ISP's reference for the subscriber
Pure: parsing and overlap detection; every error names the line. Nothing is imported unless every line
is valid.
"""

from __future__ import annotations

import csv
import io
import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime

HEADER = ["prefix", "port_from", "port_to", "valid_from", "valid_to", "subscriber"]
FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class LeaseError(ValueError):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line


@dataclass(frozen=True)
class Lease:
    line: int
    prefix: Network
    port_from: int
    port_to: int
    valid_from: datetime
    valid_to: datetime  # exclusive
    subscriber: str

    def overlaps(self, other: Lease) -> bool:
        return (self.prefix.version == other.prefix.version and self.prefix.overlaps(other.prefix)
                and self.port_from <= other.port_to and other.port_from <= self.port_to
                and self.valid_from < other.valid_to and other.valid_from < self.valid_to)


def parse(text: str) -> list[Lease]:
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or [c.strip().lower() for c in rows[0]] != HEADER:
        raise LeaseError(1, f"the first line must be the header {','.join(HEADER)}")
    leases = [_lease(n, row) for n, row in enumerate(rows[1:], start=2) if any(c.strip() for c in row)]
    if not leases:
        raise LeaseError(2, "no leases after the header")
    check_overlaps(leases)
    return leases


def _lease(line: int, row: list[str]) -> Lease:
    if len(row) != len(HEADER):
        raise LeaseError(line, f"expected {len(HEADER)} fields, got {len(row)}")
    prefix_text, pf, pt, vf, vt, subscriber = (c.strip() for c in row)
    try:
        prefix = ipaddress.ip_network(prefix_text, strict=True)
    except ValueError as exc:
        raise LeaseError(line, f"prefix {prefix_text!r}: {exc}") from None
    if bool(pf) != bool(pt):
        raise LeaseError(line, "give both port_from and port_to, or neither")
    port_from, port_to = (_port(line, pf), _port(line, pt)) if pf else (0, 65535)
    if port_from > port_to:
        raise LeaseError(line, f"port range {port_from}-{port_to} is empty")
    valid_from = _time(line, "valid_from", vf)
    valid_to = _time(line, "valid_to", vt) if vt else FAR_FUTURE
    if valid_from >= valid_to:
        raise LeaseError(line, "valid_to must be after valid_from")
    if not subscriber:
        raise LeaseError(line, "subscriber reference is empty")
    return Lease(line, prefix, port_from, port_to, valid_from, valid_to, subscriber)


def _port(line: int, text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise LeaseError(line, f"port {text!r} is not a number from 0 to 65535")
    return int(text)


def _time(line: int, field: str, text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise LeaseError(line, f"{field} {text!r} is not an ISO-8601 time") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def check_overlaps(leases: list[Lease]) -> None:
    """Raise for the first pair of leases that cover the same address, port and moment (sweep by address)."""
    def span(lease: Lease) -> tuple[int, int, int]:
        return lease.prefix.version, int(lease.prefix.network_address), int(lease.prefix.broadcast_address)

    active: list[Lease] = []
    for lease in sorted(leases, key=span):
        version, start, _ = span(lease)
        active = [a for a in active if span(a)[0] == version and span(a)[2] >= start]
        for other in active:
            if lease.overlaps(other):
                first, second = sorted((lease.line, other.line))
                raise LeaseError(second, f"overlaps the lease on line {first} (same addresses, ports and time)")
        active.append(lease)
