"""Importing ISP lease data: all or nothing, with the offending line named."""

from __future__ import annotations

import asyncpg

from tracker_watch.domain.leases import Lease, LeaseError
from tracker_watch.ledger.db import Conn


async def import_leases(conn: Conn, isp: str, leases: list[Lease]) -> int:
    """Add the leases of `isp`; raise LeaseError (and write nothing) if any overlaps one already stored."""
    async with conn.transaction():
        await conn.execute("INSERT INTO isps (name) VALUES ($1) ON CONFLICT (name) DO NOTHING", isp)
        await conn.execute("CREATE TEMP TABLE lease_stage (line integer, prefix cidr, ports int4range, "
                           "valid tstzrange, subscriber_ref text) ON COMMIT DROP")
        await conn.copy_records_to_table("lease_stage", records=[
            (x.line, str(x.prefix), asyncpg.Range(x.port_from, x.port_to, upper_inc=True),
             asyncpg.Range(x.valid_from, x.valid_to), x.subscriber) for x in leases])
        clash = await conn.fetchrow(
            "SELECT s.line, l.isp, l.subscriber_ref, l.import_line FROM lease_stage s JOIN isp_leases l "
            "ON l.prefix && s.prefix AND l.ports && s.ports AND l.valid && s.valid ORDER BY s.line LIMIT 1")
        if clash is not None:
            raise LeaseError(clash["line"], f"overlaps a lease already imported for ISP {clash['isp']} "
                                            f"(subscriber {clash['subscriber_ref']}, its line {clash['import_line']})")
        status = await conn.execute(
            "INSERT INTO isp_leases (isp, prefix, ports, valid, subscriber_ref, import_line) "
            "SELECT $1, prefix, ports, valid, subscriber_ref, line FROM lease_stage ORDER BY line", isp)
        return int(status.split()[-1])
