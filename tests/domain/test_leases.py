from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tracker_watch.domain.leases import FAR_FUTURE, LeaseError, parse

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
