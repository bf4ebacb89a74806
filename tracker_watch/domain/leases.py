"""ISP lease data: which subscriber had which address (and, behind carrier-grade NAT, which ports) when.

CSV, one lease per line after a header:  prefix,port_from,port_to,valid_from,valid_to,subscriber
  prefix      an IP address or CIDR prefix (203.0.113.7, 100.64.0.0/10, 2001:db8::/48); at least /8 for
              IPv4 and /32 for IPv6 (a lease names one subscriber's addresses, never a whole network);
              ::ffff:a.b.c.d (IPv4-mapped) is stored as the IPv4 address, which is what peers show
  port_from/to an inclusive port range for CGNAT; both empty for every port
  valid_from  ISO-8601 time (UTC when no zone is given); valid_to the same, exclusive, or empty for open;
              both from 1970 up to 9999-01-01
  subscriber  the ISP's reference for the subscriber: 1 to 200 printable characters
Lines are UTF-8 (a leading byte-order mark is skipped), at most 1,024 bytes, one row each: a quoted field
never spans lines. Pure: parsing and overlap detection. Every malformed row is reported with its line (up
to MAX_ERRORS of them); nothing is imported unless every line is valid. Linear in the number of rows
(n log n for the sorts), and a row costs ~100 bytes, so a million-row file fits in a few hundred MiB.
"""

from __future__ import annotations

import csv
import ipaddress
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from socket import AF_INET, AF_INET6, inet_ntop, inet_pton

from tracker_watch.domain import lease_overlaps

HEADER = ["prefix", "port_from", "port_to", "valid_from", "valid_to", "subscriber"]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)
MIN_PREFIXLEN = {4: 8, 6: 32}
MAX_LINE_BYTES = 1024
MAX_SUBSCRIBER = 200  # the database's CHECK on isp_leases.subscriber_ref
MAX_ERRORS = 20
COPY_CHUNK_ROWS = 10_000
_US = timedelta(microseconds=1)
_FAR_US = (FAR_FUTURE - EPOCH) // _US
_MAPPED = int(ipaddress.IPv6Address("::ffff:0:0"))
_BOM = b"\xef\xbb\xbf"
_LOW64 = (1 << 64) - 1
BS = "\\"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class LeaseError(ValueError):
    """One bad line (line 0: the file as a whole)."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}" if line else message)
        self.line = line


class LeaseErrors(LeaseError):
    """Every error found (up to MAX_ERRORS), one per line of the message, in line order."""

    def __init__(self, errors: list[LeaseError]) -> None:
        ValueError.__init__(self, "\n".join(str(e) for e in errors))
        self.line = errors[0].line
        self.errors = errors


@dataclass(frozen=True, slots=True)
class Lease:
    line: int
    prefix: Network
    port_from: int
    port_to: int
    valid_from: datetime
    valid_to: datetime  # exclusive
    subscriber: str


class LeaseFile:
    """The valid leases of a file as PostgreSQL COPY text (~80 bytes a row, no object per row).

    Columns: line, prefix (cidr), ports (int4range, inclusive), valid (tstzrange), subscriber. Reading a
    Lease back decodes its chunk: for tests and small files, not for a million rows.
    """

    def __init__(self) -> None:
        self.chunks: list[bytes] = []  # COPY_CHUNK_ROWS rows each
        self._pending: list[str] = []
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, i: int) -> Lease:
        if not 0 <= i < self._count:
            raise IndexError(i)
        return _decode_copy(self.chunks[i // COPY_CHUNK_ROWS].decode().split("\n")[i % COPY_CHUNK_ROWS])

    def __iter__(self) -> Iterator[Lease]:
        return (self[i] for i in range(len(self)))

    def add(self, copy: str) -> None:
        self._pending.append(copy)
        self._count += 1
        if len(self._pending) >= COPY_CHUNK_ROWS:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            self.chunks.append("".join(self._pending).encode())
            self._pending = []


def _decode_copy(row: str) -> Lease:
    line, prefix, ports, valid, subscriber = row.split("\t")
    port_from, port_to = ports[1:-1].split(",")
    valid_from, valid_to = valid[1:-1].split(",")
    return Lease(int(line), ipaddress.ip_network(prefix), int(port_from), int(port_to),
                 datetime.fromisoformat(valid_from), datetime.fromisoformat(valid_to),
                 subscriber.replace(BS * 2, BS))


def parse(text: str | bytes) -> LeaseFile:
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    return parse_lines(data.split(b"\n"))


def parse_lines(lines: Iterable[bytes]) -> LeaseFile:
    """Parse raw lines (without or with their b"\\n"); raise LeaseErrors naming every bad line."""
    out, rows, errors = LeaseFile(), array("Q"), []
    lines = iter(lines)
    if _header(next(lines, b"")) != HEADER:
        raise LeaseErrors([LeaseError(1, f"the first line must be the header {','.join(HEADER)} (UTF-8)")])
    for n, raw in enumerate(lines, start=2):
        try:
            _row(out, rows, n, raw)
        except LeaseError as exc:
            errors.append(exc)
            if len(errors) >= MAX_ERRORS:
                errors.append(LeaseError(0, f"stopped after {MAX_ERRORS} errors"))
                raise LeaseErrors(errors) from None
    if not errors and not len(out):
        errors.append(LeaseError(2, "no leases after the header"))
    errors.extend(LeaseError(line, f"overlaps the lease on line {other} (same addresses, ports and time)")
                  for line, other in lease_overlaps.overlaps(rows, MAX_ERRORS - len(errors)))
    if errors:
        raise LeaseErrors(sorted(errors, key=lambda e: e.line))
    out.flush()
    return out


def _header(raw: bytes) -> list[str] | None:
    text = _decode(1, raw.removeprefix(_BOM))  # a byte-order mark is no part of the first name
    try:
        return None if isinstance(text, LeaseError) else [c.strip().lower() for c in _fields(1, text)]
    except LeaseError:
        return None


def _decode(n: int, raw: bytes) -> str | LeaseError:
    raw = raw.removesuffix(b"\n").removesuffix(b"\r")
    if len(raw) > MAX_LINE_BYTES:
        return LeaseError(n, f"longer than {MAX_LINE_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return LeaseError(n, f"not UTF-8 text (byte {exc.start + 1})")
    if "\x00" in text:
        return LeaseError(n, "contains a NUL character")
    return text


def _fields(n: int, text: str) -> list[str]:
    if '"' not in text:
        return text.split(",")
    try:
        return next(csv.reader([text], strict=True))
    except csv.Error as exc:  # e.g. an unterminated quote: never merged with the next line
        raise LeaseError(n, f"malformed quoting ({exc})") from None


def _row(out: LeaseFile, rows: array[int], n: int, raw: bytes) -> None:
    text = _decode(n, raw)
    if isinstance(text, LeaseError):
        raise text
    fields = [f.strip() for f in _fields(n, text)]
    if not any(fields):
        return
    if len(fields) != len(HEADER):
        raise LeaseError(n, f"expected {len(HEADER)} fields, got {len(fields)}")
    prefix, pf, pt, vf, vt, subscriber = fields
    version, net, plen, address = _prefix(n, prefix)
    if bool(pf) != bool(pt):
        raise LeaseError(n, "give both port_from and port_to, or neither")
    port_from, port_to = (_port(n, pf), _port(n, pt)) if pf else (0, 65535)
    if port_from > port_to:
        raise LeaseError(n, f"port range {port_from}-{port_to} is empty")
    start, start_us = _time(n, "valid_from", vf)
    end, end_us = _time(n, "valid_to", vt) if vt else (FAR_FUTURE.isoformat(), _FAR_US)
    if start_us >= end_us:
        raise LeaseError(n, "valid_to must be after valid_from")
    if not subscriber:
        raise LeaseError(n, "subscriber reference is empty")
    if len(subscriber) > MAX_SUBSCRIBER or not subscriber.isprintable():
        raise LeaseError(n, f"subscriber reference must be at most {MAX_SUBSCRIBER} printable characters")
    copy = f"{n}\t{address}/{plen}\t[{port_from},{port_to}]\t[{start},{end})\t{subscriber.replace(BS, BS * 2)}\n"
    rows.extend((n, version, net >> 64, net & _LOW64, plen, port_from, port_to, start_us, end_us))
    out.add(copy)


def _prefix(n: int, text: str) -> tuple[int, int, int, str]:
    """(version, network as an integer, prefix length, address text); IPv4-mapped IPv6 becomes IPv4."""
    address, slash, bits = text.partition("/")
    family, width = (AF_INET6, 128) if ":" in address else (AF_INET, 32)
    if (len(text) > 64 or not text.isascii() or "%" in text
            or (slash and not (bits.isdigit() and len(bits) <= 3 and int(bits) <= width))):
        raise LeaseError(n, f"prefix {text[:64]!r}: not an IP address or CIDR prefix")
    try:
        packed = inet_pton(family, address)  # strict: dotted quads only, no leading zeros
    except OSError:
        raise LeaseError(n, f"prefix {text!r}: not an IP address or CIDR prefix") from None
    net, plen, version = int.from_bytes(packed), int(bits) if slash else width, 4 if width == 32 else 6
    if net & (1 << (width - plen)) - 1:
        raise LeaseError(n, f"prefix {text!r}: has host bits set")
    if version == 6 and plen >= 96 and net >> 32 == _MAPPED >> 32:  # peers show the IPv4 address
        version, net, plen, address = 4, net & 0xFFFFFFFF, plen - 96, inet_ntop(AF_INET, packed[12:])
    elif version == 6:
        address = inet_ntop(AF_INET6, packed)  # canonical text, whatever the case and zeros given
    if plen < MIN_PREFIXLEN[version]:
        raise LeaseError(n, f"prefix {text!r} is shorter than /{MIN_PREFIXLEN[version]} (IPv{version}): "
                            "a lease names one subscriber's addresses")
    if version == 6 and net >> (128 - plen) == _MAPPED >> (128 - plen):
        raise LeaseError(n, f"prefix {text!r} covers the IPv4-mapped range ::ffff:0:0/96")
    return version, net, plen, address


def _port(n: int, text: str) -> int:
    if not (text.isascii() and text.isdigit() and len(text) <= 5 and int(text) <= 65535):
        raise LeaseError(n, f"port {text[:20]!r} is not a number from 0 to 65535")
    return int(text)


def _time(n: int, field: str, text: str) -> tuple[str, int]:
    """The time as UTC ISO-8601 text and in microseconds since the epoch; from 1970 up to FAR_FUTURE."""
    known = _times.get(text)
    if known is not None:
        return known
    try:
        if len(text) > 40 or not text.isascii():
            raise ValueError
        value = datetime.fromisoformat(text)  # 3.11: any ISO-8601 form, "Z" included
    except ValueError:
        raise LeaseError(n, f"{field} {text[:40]!r} is not an ISO-8601 time") from None
    value = value if value.tzinfo else value.replace(tzinfo=UTC)
    us = (value - EPOCH) // _US  # aware arithmetic: no overflow even for year 1 with an offset
    if not 0 <= us <= _FAR_US:
        raise LeaseError(n, f"{field} {text!r} is outside 1970-01-01 to 9999-01-01")
    if len(_times) >= 100_000:  # lease files repeat their times (hourly, daily boundaries); bound the cache
        _times.clear()
    _times[text] = result = (EPOCH + us * _US).isoformat(), us
    return result


_times: dict[str, tuple[str, int]] = {}
