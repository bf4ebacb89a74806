"""Command-line actions on ISPs, strikes and notices."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from tracker_watch.cli_ledger import EXIT_OK, usage
from tracker_watch.config import Settings
from tracker_watch.ledger.notice_render import ensure_rendered


def add_parsers(sub: Any) -> None:
    isp = sub.add_parser("isp", help="ISPs, their lease data and notice delivery").add_subparsers(
        dest="action", required=True)
    add = isp.add_parser("set", help="create or update an ISP")
    add.add_argument("name")
    add.add_argument("--abuse-email", default=None, help="the ISP's abuse desk (Service_Provider/Email)")
    add.add_argument("--webhook", default=None, help="deliver notices by HTTP POST to this URL")
    add.add_argument("--drop-dir", default=None, help="deliver notices as files into this folder")
    add.add_argument("--format", choices=["xml", "json"], default=None, help="what the webhook receives")
    imp = isp.add_parser("import", help="import lease data (CSV: prefix,port_from,port_to,valid_from,valid_to,"
                                        "subscriber)")
    imp.add_argument("file", type=Path)
    imp.add_argument("--isp", required=True)
    isp.add_parser("list", help="ISPs with their lease counts and delivery")
    strikes = sub.add_parser("strikes", help="the strike ledger").add_subparsers(dest="action", required=True)
    ls = strikes.add_parser("list", help="strikes, newest first")
    ls.add_argument("--subject", type=int)
    ls.add_argument("--all", action="store_true", help="include voided and superseded strikes")
    strikes.add_parser("rebuild", help="re-derive every strike from the evidence (a sound ledger is unchanged)")
    void = strikes.add_parser("void", help="void a strike (dispute upheld) and re-derive what follows")
    void.add_argument("id", type=int)
    void.add_argument("--reason", required=True)
    void.add_argument("--by", required=True, help="who voids it (recorded as cli:NAME in the strike and audit log)")
    notices = sub.add_parser("notices", help="the notices outbox").add_subparsers(dest="action", required=True)
    notices.add_parser("list", help="notices and their delivery state")
    show = notices.add_parser("show", help="print one notice")
    show.add_argument("id", type=int)
    show.add_argument("--format", choices=["xml", "json"], default="xml")


async def isp_set(db: Any, settings: Settings, args: argparse.Namespace) -> int:
    async with db.pool.acquire() as conn, conn.transaction():
        await conn.execute("INSERT INTO isps (name) VALUES ($1) ON CONFLICT (name) DO NOTHING", args.name)
        for column, value in (("abuse_email", args.abuse_email), ("webhook_url", args.webhook),
                              ("drop_dir", args.drop_dir), ("format", args.format)):
            if value is not None:
                await conn.execute(f"UPDATE isps SET {column} = NULLIF($2, '') WHERE name = $1", args.name, value)
        await conn.execute("INSERT INTO audit_log (actor, action, object, detail) VALUES ($1, 'isp.set', $2, '{}')",
                           _actor(), f"isp:{args.name}")
    print(f"ISP {args.name} saved")
    return EXIT_OK


async def isp_import(db: Any, settings: Settings, args: argparse.Namespace) -> int:
    from tracker_watch.domain.leases import LeaseError
    from tracker_watch.ledger.leases import import_leases, read_lease_file

    try:
        leases = read_lease_file(args.file)
        async with db.pool.acquire() as conn:
            count = await import_leases(conn, args.isp, leases)
    except OSError as exc:
        return usage(f"cannot read {args.file}: {exc.strerror or exc}")
    except LeaseError as exc:  # one line per error, each naming its line, then what happened
        errors = str(exc).splitlines()
        for error in errors:
            print(f"tracker-watch: error: {args.file}: {error}", file=sys.stderr)
        return usage(f"{args.file}: nothing imported ({len(errors)} error{'s' * (len(errors) > 1)})")
    print(f"imported {count} leases for ISP {args.isp}")
    return EXIT_OK


async def isp_list(db: Any, settings: Settings, args: argparse.Namespace) -> int:
    rows = await db.pool.fetch("SELECT i.*, (SELECT count(*) FROM isp_leases l WHERE l.isp = i.name) AS leases "
                               "FROM isps i ORDER BY name")
    for r in rows:
        delivery = r["webhook_url"] or r["drop_dir"] or "(none: notices are held)"
        print(f"{r['name']:<24} {r['leases']:>8} leases  {r['abuse_email'] or '-':<28} {delivery}")
    return EXIT_OK


async def strikes_list(db: Any, settings: Settings, args: argparse.Namespace) -> int:
    print_strike_table(await fetch_strikes(db.pool, args.subject, args.all))
    return EXIT_OK


async def fetch_strikes(pool: Any, subject: int | None = None, everything: bool = False) -> list[Any]:
    rows: list[Any] = await pool.fetch("""
        SELECT s.id, s.level, s.status, s.issued_at, s.subject_id, sub.kind, sub.isp, sub.subscriber_ref,
               host(sub.ip) AS ip, w.title, n.state AS notice,
               (SELECT string_agg(DISTINCT host(a.ip), ',') FROM attributions a WHERE a.subject_id = s.subject_id
                  AND a.work_id = s.work_id) AS ips
        FROM strikes s JOIN subjects sub ON sub.id = s.subject_id JOIN works w ON w.id = s.work_id
        LEFT JOIN notices n ON n.strike_id = s.id AND n.kind = 'notice'
        WHERE ($1::bigint IS NULL OR s.subject_id = $1) AND ($2 OR s.status = 'active')
        ORDER BY s.issued_at DESC, s.id DESC""", subject, everything)
    return rows


def print_strike_table(rows: list[Any]) -> None:
    from tracker_watch.domain.policy import LEVEL_NAMES

    print(f"{'id':>5} {'level':<15} {'status':<10} {'issued (UTC)':<19} {'subject':<34} {'addresses':<18} "
          f"{'notice':<9} work")
    for r in rows:
        who = f"{r['isp']}/{r['subscriber_ref']}" if r["kind"] == "subscriber" else f"{r['ip']} (unattributed)"
        print(f"{r['id']:>5} {r['level']} {LEVEL_NAMES[r['level']]:<13} {r['status']:<10} "
              f"{r['issued_at']:%Y-%m-%d %H:%M:%S} {who[:34]:<34} {(r['ips'] or '-')[:18]:<18} "
              f"{r['notice'] or '-':<9} {r['title']}")


async def strikes_rebuild(db: Any, settings: Settings, args: argparse.Namespace) -> int:
    from tracker_watch.ledger.strikes import StrikeLedger

    r = await StrikeLedger(db.pool, settings).rebuild()
    print(f"rebuilt from {r.attributed} attributed observations: {r.created} strikes created, "
          f"{r.superseded} superseded" + (" — identical to the live ledger" if not (r.created or r.superseded) else ""))
    return EXIT_OK


async def strikes_void(db: Any, settings: Settings, args: argparse.Namespace) -> int:
    from tracker_watch.ledger.strikes import StrikeLedger

    if not args.reason.strip():
        return usage("--reason must not be empty")
    by = args.by.strip()
    if not by or len(by) > 200 or not by.isprintable():
        return usage("--by must name who voids the strike (1-200 printable characters)")
    result = await StrikeLedger(db.pool, settings).void(args.id, f"cli:{by}", args.reason.strip())
    if result is None:
        return usage(f"no active strike {args.id}")
    print(f"strike {args.id} voided by {by}; re-derived: {result.created} strikes created, {result.superseded} "
          f"superseded; {result.withdrawals} withdrawals queued for notices the ISP may hold")
    return EXIT_OK


async def notices_list(db: Any, settings: Settings, args: argparse.Namespace) -> int:
    rows = await db.pool.fetch("SELECT n.id, n.strike_id, n.isp, n.state, n.attempts, n.last_error, n.delivered_at, "
                               "n.kind, n.withdraws, s.level FROM notices n JOIN strikes s ON s.id = n.strike_id "
                               "ORDER BY n.id DESC")
    for r in rows:
        note = r["last_error"] or (f"delivered {r['delivered_at']:%Y-%m-%d %H:%M:%S}" if r["delivered_at"] else "")
        what = f"withdraws notice {r['withdraws']}" if r["kind"] == "withdrawal" else f"level {r['level']}"
        print(f"{r['id']:>5} strike {r['strike_id']:>5} ({what}) {r['isp'] or '-':<20} {r['state']:<10} "
              f"attempts {r['attempts']:>2}  {note}")
    return EXIT_OK


async def notices_show(db: Any, settings: Settings, args: argparse.Namespace) -> int:
    await ensure_rendered(db.pool, settings, [args.id])  # bodies render on first need (ledger/notice_render.py)
    row = await db.pool.fetchrow("SELECT xml, json FROM notices WHERE id = $1", args.id)
    if row is None:
        return usage(f"no notice {args.id}")
    print(row[args.format], end="" if row[args.format].endswith("\n") else "\n")
    return EXIT_OK


def _actor() -> str:
    return f"cli:{os.environ.get('USER', 'unknown')}"


COMMANDS: dict[tuple[str, str | None], Callable[[Any, Settings, argparse.Namespace], Coroutine[Any, Any, int]]] = {
    ("isp", "set"): isp_set, ("isp", "import"): isp_import, ("isp", "list"): isp_list,
    ("strikes", "list"): strikes_list, ("strikes", "rebuild"): strikes_rebuild, ("strikes", "void"): strikes_void,
    ("notices", "list"): notices_list, ("notices", "show"): notices_show,
}
