"""The demo's last act: the evidence becomes strikes, and a strike becomes a notice for an ISP.

Two seeders are subscribers of "Demo Telecom" (lease data imported as an ISP would send it); the
third is not covered, so its strike is against the bare address and its notice is held. Loopback
addresses have no country: the demo maps them to Kazakhstan (policy.test_country), the jurisdiction
the policy covers.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any
from xml.dom import minidom

from tracker_watch.cli_strikes import fetch_strikes, print_strike_table
from tracker_watch.daemon import Daemon
from tracker_watch.domain.leases import parse
from tracker_watch.ledger.leases import import_leases
from tracker_watch.ledger.notice_render import ensure_rendered

ISP = "Demo Telecom"


async def lease_seeders(daemon: Daemon, seeder_ips: list[str], drop_dir: Path) -> None:
    csv = "prefix,port_from,port_to,valid_from,valid_to,subscriber\n" + "".join(
        f"{ip},,,2020-01-01T00:00:00Z,,DT-{1000 + i}\n" for i, ip in enumerate(seeder_ips[:2]))
    async with daemon.db.pool.acquire() as conn:
        await import_leases(conn, ISP, parse(csv))
        await conn.execute("UPDATE isps SET abuse_email = 'abuse@telecom.example', drop_dir = $2 WHERE name = $1",
                           ISP, str(drop_dir))


async def show_strikes(daemon: Daemon, seeder_ips: list[str], bystanders: list[str], wait_s: float = 15) -> bool:
    """Evaluate until every seeder has its strike, print the strikes and one notice; True if as expected."""
    assert daemon.strikes is not None
    assert daemon.outbox is not None
    deadline = time.monotonic() + wait_s
    rows: list[Any] = []
    while time.monotonic() < deadline:
        await daemon.strikes.tick()
        await daemon.outbox.deliver_due()
        rows = await fetch_strikes(daemon.db.pool)
        if set(seeder_ips) <= _addresses(rows):
            break
        await asyncio.sleep(0.5)
    print()
    print_strike_table(rows)
    notice = await daemon.db.pool.fetchrow(
        "SELECT n.id, n.state, n.xml FROM notices n WHERE n.isp = $1 ORDER BY n.id LIMIT 1", ISP)
    if notice is not None:
        await ensure_rendered(daemon.db.pool, daemon.settings, [notice["id"]])
        notice = await daemon.db.pool.fetchrow("SELECT id, state, xml FROM notices WHERE id = $1", notice["id"])
        assert notice is not None
        print(f"\nnotice {notice['id']} for {ISP} ({notice['state']}: written to its drop folder), ACNS XML:")
        print(minidom.parseString(notice["xml"]).toprettyxml(indent="  ").split("\n", 1)[1].rstrip())
    struck = _addresses(rows)
    ok = set(seeder_ips) <= struck and not struck & set(bystanders) and notice is not None
    print(f"\nstrikes: every seeder struck: {set(seeder_ips) <= struck}; decoy or liar struck: "
          f"{bool(struck & set(bystanders))}")
    return ok


def _addresses(rows: list[Any]) -> set[str]:
    return {ip for r in rows if r["ips"] for ip in r["ips"].split(",")}
