"""Lease import on a real PostgreSQL: bulk load, every clash with stored leases named, all or nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tracker_watch.domain.leases import MAX_LINE_BYTES, LeaseError, LeaseErrors, parse
from tracker_watch.ledger.db import Database
from tracker_watch.ledger.leases import bounded_lines, import_leases, read_lease_file

HEAD = "prefix,port_from,port_to,valid_from,valid_to,subscriber\n"


async def test_leases_land_as_parsed(db: Database) -> None:
    async with db.pool.acquire() as conn:
        count = await import_leases(conn, "CG Net", parse(
            HEAD + "::ffff:100.64.0.1,1024,2047,2026-01-01T05:00:00+05:00,2026-02-01,\"SUB\\1, a\"\n"
                   "2001:DB8::/48,,,2026-01-01,,SUB-2\n"))
    assert count == 2
    rows = await db.pool.fetch("SELECT host(prefix) || '/' || masklen(prefix) AS prefix, ports::text, "
                               "lower(valid) AS since, upper_inf(valid) AS open, subscriber_ref, import_line "
                               "FROM isp_leases ORDER BY import_line")
    assert [(r["prefix"], r["ports"], r["since"].isoformat(), r["open"], r["subscriber_ref"], r["import_line"])
            for r in rows] == [("100.64.0.1/32", "[1024,2048)", "2026-01-01T00:00:00+00:00", False, "SUB\\1, a", 2),
                               ("2001:db8::/48", "[0,65536)", "2026-01-01T00:00:00+00:00", False, "SUB-2", 3)]
    # the mapped address is stored as IPv4, so evidence from the IPv4 peer finds it
    assert await db.pool.fetchval("SELECT subscriber_ref FROM isp_leases WHERE prefix >>= '100.64.0.1'::inet "
                                  "AND ports @> 1500 AND valid @> '2026-01-15'::timestamptz") == "SUB\\1, a"


async def test_every_clash_with_stored_leases_is_named_and_nothing_lands(db: Database) -> None:
    async with db.pool.acquire() as conn:
        await import_leases(conn, "ISP1", parse(HEAD + "203.0.113.0/24,,,2026-01-01,,S1\n"
                                                       "100.64.0.1,1000,1999,2026-01-01,2026-02-01,S2\n"))
        with pytest.raises(LeaseErrors) as caught:
            await import_leases(conn, "ISP2", parse(HEAD + "198.51.100.0/24,,,2026-01-01,,S3\n"
                                                           "203.0.113.128/25,,,2026-06-01,,S4\n"
                                                           "100.64.0.1,1500,1500,2026-01-31,2026-03-01,S5\n"
                                                           "100.64.0.1,2000,2999,2026-01-01,2026-02-01,S6\n"))
    assert str(caught.value).splitlines() == [
        "line 3: overlaps a lease already imported for ISP ISP1 (subscriber S1, its line 2)",
        "line 4: overlaps a lease already imported for ISP ISP1 (subscriber S2, its line 3)"]
    assert await db.pool.fetchval("SELECT count(*) FROM isp_leases") == 2
    assert await db.pool.fetchval("SELECT count(*) FROM isps WHERE name = 'ISP2'") == 0


async def test_a_bad_isp_name_is_an_error_not_a_traceback(db: Database) -> None:
    async with db.pool.acquire() as conn:
        for name in ("", "x" * 201, "tab\there"):
            with pytest.raises(LeaseError, match="ISP name must be 1 to 200 printable characters"):
                await import_leases(conn, name, parse(HEAD + "10.0.0.1,,,2026-01-01,,S\n"))


def test_over_long_lines_are_cut_short_and_reported(tmp_path: Path) -> None:
    path = tmp_path / "leases.csv"
    exact = "10.0.0.1,,,2026-01-01,," + "S" * (MAX_LINE_BYTES - 23) + "\r\n"
    path.write_bytes((HEAD + exact + "10.0.0.2,,,2026-01-01,," + "S" * 10_000_000 + "\n"
                      + "10.0.0.3,,,2026-01-01,,S").encode())
    with path.open("rb") as stream:
        assert max(len(line) for line in bounded_lines(stream, MAX_LINE_BYTES)) == MAX_LINE_BYTES + 3
    with pytest.raises(LeaseErrors) as caught:
        read_lease_file(path)
    assert [str(e) for e in caught.value.errors] == [
        "line 2: subscriber reference must be at most 200 printable characters",
        f"line 3: longer than {MAX_LINE_BYTES} bytes"]
