"""Importing ISP lease data: all or nothing, with the offending lines named.

The file is checked in Python first (domain/leases.py: format, ranges, overlaps within the file), then
bulk-loaded: one COPY into a temporary table and one INSERT … SELECT into isp_leases, whose exclusion
constraint stays the final guard against overlaps. The insert runs in hashed line order: the GiST index
behind the constraint builds ~3× slower from address-sorted rows (bad page splits), and lease files come
sorted by address. Overlaps with leases already stored are looked for only when the constraint refuses
the insert, so a clean import pays for the index once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import BinaryIO

import asyncpg

from tracker_watch.domain.leases import MAX_ERRORS, MAX_LINE_BYTES, LeaseError, LeaseErrors, LeaseFile, parse_lines
from tracker_watch.ledger.db import Conn

MAX_ISP_NAME = 200  # the CHECK on isps.name

_CLASHES = """
    SELECT s.line, l.isp, l.subscriber_ref, l.import_line FROM lease_stage s
    CROSS JOIN LATERAL (SELECT isp, subscriber_ref, import_line FROM isp_leases l
                        WHERE l.prefix && s.prefix AND l.ports && s.ports AND l.valid && s.valid LIMIT 1) l
    ORDER BY s.line LIMIT $1
"""


def read_lease_file(path: Path) -> LeaseFile:
    """Parse a lease file without ever holding more than one (bounded) line of it as raw bytes."""
    with path.open("rb") as stream:
        return parse_lines(bounded_lines(stream, MAX_LINE_BYTES))


def bounded_lines(stream: BinaryIO, limit: int) -> Iterator[bytes]:
    """The stream's lines; one longer than `limit` is cut short (and the parser reports it)."""
    while line := stream.readline(limit + 3):  # room for "\r\n" after a line of exactly `limit` bytes
        if not line.endswith(b"\n"):
            while (rest := stream.readline(1 << 16)) and not rest.endswith(b"\n"):
                pass  # skip the remainder of an over-long line
        yield line


async def import_leases(conn: Conn, isp: str, leases: LeaseFile) -> int:
    """Add the leases of `isp`; raise LeaseError (and write nothing) if any overlaps one already stored."""
    if not 1 <= len(isp) <= MAX_ISP_NAME or not isp.isprintable():
        raise LeaseError(0, f"the ISP name must be 1 to {MAX_ISP_NAME} printable characters")
    async with conn.transaction():
        await conn.execute("INSERT INTO isps (name) VALUES ($1) ON CONFLICT (name) DO NOTHING", isp)
        await conn.execute("DROP TABLE IF EXISTS pg_temp.lease_stage")
        await conn.execute("CREATE TEMP TABLE lease_stage (line integer, prefix cidr, ports int4range, "
                           "valid tstzrange, subscriber_ref text) ON COMMIT DROP")
        await conn.copy_to_table("lease_stage", source=_chunks(leases))
        try:
            async with conn.transaction():  # a savepoint: after a refusal, the stage is still there to explain it
                status = await conn.execute(
                    "INSERT INTO isp_leases (isp, prefix, ports, valid, subscriber_ref, import_line) "
                    "SELECT $1, prefix, ports, valid, subscriber_ref, line FROM lease_stage ORDER BY hashint4(line)",
                    isp)
        except asyncpg.ExclusionViolationError as exc:
            raise await _explain(conn, exc) from None
        return int(status.split()[-1])


async def _chunks(leases: LeaseFile) -> AsyncIterator[bytes]:
    for chunk in leases.chunks:
        yield chunk


async def _explain(conn: Conn, exc: asyncpg.ExclusionViolationError) -> LeaseError:
    rows = await conn.fetch(_CLASHES, MAX_ERRORS)
    if not rows:  # another import committed an overlapping lease between our check and our insert
        return LeaseError(0, f"the database refused an overlapping lease: {exc.detail or exc}")
    return LeaseErrors([LeaseError(r["line"], f"overlaps a lease already imported for ISP {r['isp']} (subscriber "
                                              f"{r['subscriber_ref']}, its line {r['import_line']})") for r in rows])
