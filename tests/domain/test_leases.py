from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tracker_watch.domain.leases import FAR_FUTURE, MAX_ERRORS, LeaseError, LeaseErrors, parse

HEAD = "prefix,port_from,port_to,valid_from,valid_to,subscriber\n"


def test_parses_prefixes_ports_and_open_ends() -> None:
    leases = parse(HEAD + "203.0.113.7,,,2026-01-01T00:00:00Z,,SUB-1\n"
                          "100.64.0.0/30,1024,2047,2026-01-01,2026-02-01,SUB-2\n"
                          "100.64.0.0/30,2048,4095,2026-01-01,2026-02-01,SUB-3\n"
                          "\n"
                          "2001:db8::/48,,,2026-01-01T00:00:00+05:00,,SUB-4\n")
    assert [(x.line, x.subscriber) for x in leases] == [(2, "SUB-1"), (3, "SUB-2"), (4, "SUB-3"), (6, "SUB-4")]
    assert (leases[0].port_from, leases[0].port_to, leases[0].valid_to) == (0, 65535, FAR_FUTURE)
    assert leases[1].valid_from == datetime(2026, 1, 1, tzinfo=UTC)
    assert leases[3].valid_from.utcoffset() is not None


@pytest.mark.parametrize(("body", "message"), [
    ("", "line 1: the first line must be the header"),
    ("ip,sub\n", "line 1: the first line must be the header"),
    (HEAD, "line 2: no leases"),
    (HEAD + "300.0.0.1,,,2026-01-01,,S\n", "line 2: prefix '300.0.0.1'"),
    (HEAD + "10.0.0.1/24,,,2026-01-01,,S\n", "line 2: prefix '10.0.0.1/24': .*host bits"),
    (HEAD + "10.0.0.1,5,,2026-01-01,,S\n", "line 2: give both port_from and port_to"),
    (HEAD + "10.0.0.1,9,5,2026-01-01,,S\n", "line 2: port range 9-5 is empty"),
    (HEAD + "10.0.0.1,1,70000,2026-01-01,,S\n", "line 2: port '70000'"),
    (HEAD + "10.0.0.1,,,yesterday,,S\n", "line 2: valid_from 'yesterday' is not an ISO-8601 time"),
    (HEAD + "10.0.0.1,,,2026-02-01,2026-01-01,S\n", "line 2: valid_to must be after valid_from"),
    (HEAD + "10.0.0.1,,,2026-01-01,,\n", "line 2: subscriber reference is empty"),
    (HEAD + "10.0.0.1,,,2026-01-01\n", "line 2: expected 6 fields, got 4"),
    (HEAD + "10.0.0.0/24,,,2026-01-01,,A\n10.0.1.0/24,,,2026-01-01,,B\n10.0.0.128/25,,,2026-06-01,,C\n",
     "line 4: overlaps the lease on line 2"),
    (HEAD + "100.64.0.1,1000,2000,2026-01-01,,A\n100.64.0.1,2000,3000,2026-01-01,,B\n",
     "line 3: overlaps the lease on line 2"),
])
def test_errors_name_the_line(body: str, message: str) -> None:
    with pytest.raises(LeaseError, match=message):
        parse(body)


def test_adjacent_leases_do_not_overlap() -> None:
    parse(HEAD + "100.64.0.1,1000,1999,2026-01-01,,A\n100.64.0.1,2000,2999,2026-01-01,,B\n"
                 "10.0.0.1,,,2026-01-01,2026-02-01,C\n10.0.0.1,,,2026-02-01,,D\n")


@pytest.mark.parametrize(("body", "message"), [
    # hostile input: each is one error naming its line, never a traceback (issue 13)
    (HEAD + '10.0.0.1,,,2026-01-01,,"SUB-1\n10.0.0.2,,,2026-01-01,,SUB-2\n', "line 2: malformed quoting"),
    (HEAD + "10.0.0.1,1,\u0663,2026-01-01,,S\n", "line 2: port '\u0663' is not a number"),
    (HEAD + "10.0.0.1,1,\u00b2,2026-01-01,,S\n", "line 2: port '\u00b2' is not a number"),
    (HEAD + "10.0.0.1,1,000001,2026-01-01,,S\n", "line 2: port '000001'"),
    (HEAD + "\uff11.2.3.4,,,2026-01-01,,S\n", "line 2: prefix .*not an IP address"),
    (HEAD + "10.0.0.1/\u0663\u0662,,,2026-01-01,,S\n", "line 2: prefix .*not an IP address"),
    (HEAD + "10.0.0.0/,,,2026-01-01,,S\n", "line 2: prefix .*not an IP address"),
    (HEAD + "10.0.0.1/33,,,2026-01-01,,S\n", "line 2: prefix .*not an IP address"),
    (HEAD + "fe80::1%eth0,,,2026-01-01,,S\n", "line 2: prefix .*not an IP address"),
    (HEAD + "010.0.0.1,,,2026-01-01,,S\n", "line 2: prefix .*not an IP address"),
    (HEAD + "0.0.0.0/0,,,2026-01-01,,S\n", "line 2: prefix '0.0.0.0/0' is shorter than /8"),
    (HEAD + "::/0,,,2026-01-01,,S\n", "line 2: prefix '::/0' is shorter than /32"),
    (HEAD + "::/64,,,2026-01-01,,S\n", "line 2: prefix '::/64' covers the IPv4-mapped range"),
    (HEAD + "::ffff:0.0.0.0/100,,,2026-01-01,,S\n", "line 2: prefix '::ffff:0.0.0.0/100' is shorter than /8"),
    (HEAD + "10.0.0.1,,,0001-01-01T00:00:00+05:00,,S\n", "line 2: valid_from .* is outside 1970-01-01"),
    (HEAD + "10.0.0.1,,,1969-12-31T23:59:59Z,,S\n", "line 2: valid_from .* is outside 1970-01-01"),
    (HEAD + "10.0.0.1,,,2026-01-01,9999-12-31,S\n", "line 2: valid_to .* is outside"),
    (HEAD + "10.0.0.1,,,\uff12026-01-01,,S\n", "line 2: valid_from .* is not an ISO-8601 time"),
    (HEAD + "10.0.0.1,,,2026-01-01,," + "S" * 201 + "\n", "line 2: subscriber reference must be at most 200"),
    (HEAD + "10.0.0.1,,,2026-01-01,,S\tT\n", "line 2: subscriber reference must be at most 200 printable"),
    (HEAD + "10.0.0.1,,,2026-01-01,,S\x00\n", "line 2: contains a NUL character"),
    (HEAD + "10.0.0.1,,,2026-01-01,," + "S" * 1100 + "\n", "line 2: longer than 1024 bytes"),
    ("\ufeffprefix;port_from\n", "line 1: the first line must be the header"),
    ('"prefix,port_from\n', "line 1: the first line must be the header"),
])
def test_hostile_rows_are_one_line_errors(body: str, message: str) -> None:
    with pytest.raises(LeaseErrors, match=message) as caught:
        parse(body)
    assert len(str(caught.value).splitlines()) == 1


def test_non_utf8_names_the_line() -> None:
    with pytest.raises(LeaseErrors, match=r"^line 3: not UTF-8 text \(byte 25\)$"):
        parse(HEAD.encode() + b"10.0.0.1,,,2026-01-01,,S\n10.0.0.2,,,2026-01-01,,S\xff\n")


def test_bom_crlf_quotes_and_mapped_addresses_are_accepted() -> None:
    quoted_head = ",".join(f'"{name}"' for name in HEAD.strip().split(",")) + "\n"
    assert len(parse(quoted_head + "10.0.0.1,,,2026-01-01,,S\n")) == 1
    leases = parse(b"\xef\xbb\xbf" + HEAD.encode().replace(b"\n", b"\r\n")
                   + b'::ffff:198.51.100.7,,,2026-01-01T05:00:00+05:00,,"SUB, \\ 1"\r\n'
                   + b"::ffff:198.51.100.0/120,,,2025-01-01,2025-06-01,SUB-2\r\n"
                   + b"2001:DB8:0::/48,,,2025-01-01,2025-06-01,SUB-3\r\n")
    assert [str(x.prefix) for x in leases] == ["198.51.100.7/32", "198.51.100.0/24", "2001:db8::/48"]
    assert leases[0].subscriber == "SUB, \\ 1"
    assert leases[0].valid_from == datetime(2026, 1, 1, tzinfo=UTC)


def test_every_error_is_reported_up_to_a_limit() -> None:
    body = HEAD + "".join(f"10.0.0.{i},,,2026-01-01,,S\n10.0.1.{i},,,never,,S\n" for i in range(5))
    with pytest.raises(LeaseErrors) as caught:
        parse(body)
    assert [e.line for e in caught.value.errors] == [3, 5, 7, 9, 11]
    with pytest.raises(LeaseErrors) as caught:
        parse(HEAD + "10.0.0.1,,,never,,S\n" * 100)
    assert len(caught.value.errors) == MAX_ERRORS + 1
    assert str(caught.value).endswith(f"stopped after {MAX_ERRORS} errors")
    overlapping = HEAD + "".join(f"10.0.0.1,{p},{p},2026-01-01,,S\n10.0.0.1,{p},{p},2026-03-01,,S\n"
                                 for p in range(30))
    with pytest.raises(LeaseErrors) as caught:
        parse(overlapping)
    assert [e.line for e in caught.value.errors] == list(range(3, 3 + 2 * MAX_ERRORS, 2))


def test_hourly_leases_of_one_address_and_cgnat_port_blocks() -> None:
    """The shapes that were quadratic: 4,000 hourly leases of one address; 64 port blocks x 90 days."""
    hourly = HEAD + "".join(f"203.0.113.7,,,{datetime.fromtimestamp(1767225600 + h * 3600, UTC).isoformat()},"
                            f"{datetime.fromtimestamp(1767225600 + h * 3600 + 3600, UTC).isoformat()},S{h}\n"
                            for h in range(4000))
    assert len(parse(hourly)) == 4000
    blocks = HEAD + "".join(f"100.64.0.1,{b * 1024},{b * 1024 + 1023},2026-01-{1 + d % 28:02d}T00:00:00Z,"
                            f"2026-01-{1 + d % 28:02d}T23:59:59Z,S{b}-{d}\n" for b in range(64) for d in range(28))
    assert len(parse(blocks)) == 64 * 28
