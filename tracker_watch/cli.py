"""Command line: `tracker-watch run | migrate | target … | peers | ledger … | evidence export | nodes | node … |
demo | lab`.

Exit codes: 0 success, 1 the operation failed at run time, 2 bad input or configuration (one line on
stderr saying what was wrong; nothing written). An id that names nothing is bad input.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import typing
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from tracker_watch import SOFTWARE, cli_help, cli_ledger, cli_nodes, cli_strikes
from tracker_watch import log as logmod
from tracker_watch.cli_checks import UsageError, check_database_meant, check_isp_set
from tracker_watch.config import ConfigError, LogSettings, Settings, load_settings
from tracker_watch.domain.targets import TargetParseError, TargetSpec, parse_target

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class Parser(argparse.ArgumentParser):
    """Usage errors on one line (argparse would print the whole usage first); subcommands inherit this."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="tracker-watch", description="Monitor BitTorrent swarms for registered works.")
    cli_help.add_common_options(p, top=True)
    p.add_argument("--version", action="version", version=SOFTWARE)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="run the monitoring daemon until SIGTERM/SIGINT")
    sub.add_parser("migrate", help="apply database migrations and exit")
    target = sub.add_parser("target", help="register and list targets").add_subparsers(dest="action", required=True)
    add = target.add_parser("add", help="register a v1/v2 infohash, a magnet link or a .torrent file")
    add.add_argument("input", help="40/64 hex characters, 'magnet:?…', or a path to a .torrent file")
    add.add_argument("--work", required=True, help="title of the work")
    add.add_argument("--owner", required=True, help="rights holder's name")
    target.add_parser("list", help="list registered targets (with why one could not be watched)")
    for verb, text in (("pause", "stop watching a target"), ("resume", "watch a paused target again, or retry one "
                       "set aside as unwatchable"), ("delete", "stop watching and hide a target (evidence is kept)")):
        target.add_parser(verb, help=text).add_argument("id", type=int, help="target id (see `target list`)")
    peers = sub.add_parser("peers", help="per-peer summary of the evidence gathered")
    peers.add_argument("--target", help="only this target (id, or its v1/v2 infohash in hex)")
    token = sub.add_parser("token", help="API tokens").add_subparsers(dest="action", required=True)
    create = token.add_parser("create", help="create a token (printed once; only its hash is stored)")
    create.add_argument("--role", required=True, choices=["rightsholder", "operator", "isp"])
    create.add_argument("--name", required=True, help="rights holder, ISP or operator name")
    token.add_parser("list", help="list tokens (never the secrets)")
    revoke = token.add_parser("revoke", help="revoke a token; refused from its next request on")
    revoke.add_argument("id", type=int)
    cli_ledger.add_parsers(sub)
    cli_strikes.add_parsers(sub)
    cli_nodes.add_parsers(sub)
    demo = sub.add_parser("demo", help="end-to-end demo on a local swarm and an embedded PostgreSQL")
    demo.add_argument("--seconds", type=float, default=40.0, help="longest to observe the swarm")
    demo.add_argument("--serve", type=float, nargs="?", const=3600.0, default=None, metavar="SECONDS",
                      help="keep serving the web console after the demo (default: an hour; Ctrl-C stops)")
    lab = sub.add_parser("lab", help="a local swarm (tracker, seeders, decoy, liar) to run the daemon against")
    lab.add_argument("--dir", type=Path, default=Path("lab"),
                     help="where the magnet, the ISP's lease data and its drop folder are written (default: ./lab)")
    lab.add_argument("--tracker", default="127.0.0.1:6969", help="tracker address (default: 127.0.0.1:6969)")
    lab.add_argument("--seeders", default="127.0.0.11,127.0.0.12,127.0.0.13",
                     help="comma-separated seeder addresses (default: 127.0.0.11,127.0.0.12,127.0.0.13)")
    lab.add_argument("--decoy", default="127.0.0.66", help="decoy address (default: 127.0.0.66)")
    lab.add_argument("--liar", default="127.0.0.77", help="liar address (default: 127.0.0.77)")
    lab.add_argument("--no-decoy", action="store_true", help="no decoy")
    lab.add_argument("--no-liar", action="store_true", help="no liar")
    cli_help.decorate(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "demo":
            from tracker_watch.demo.run import run_demo

            return asyncio.run(run_demo(observe_s=args.seconds, serve_s=args.serve))
        if args.command == "lab":
            from tracker_watch.demo.lab import LabError, run_lab

            try:
                return asyncio.run(run_lab(args))
            except LabError as exc:
                raise UsageError(str(exc)) from None
        config = args.config or (Path(env) if (env := os.environ.get("TRACKER_WATCH_CONFIG")) else None)
        settings = load_settings(config)
        key = (args.command, getattr(args, "action", None))
        if key != ("ledger", "pubkey"):
            check_database_meant(settings, config, args.init)
        if args.command == "run":
            logmod.configure(settings.log, node=settings.node.name)
            return asyncio.run(_run_daemon(settings))
        logmod.configure(LogSettings(format="console", level="warning"), stream=sys.stderr)
        if key == ("ledger", "pubkey"):
            return asyncio.run(cli_ledger.pubkey(None, settings, args))
        if check := _CHECKS.get(key):
            check(args)
        command = _COMMANDS[key]
        return asyncio.run(_with_db(settings, lambda db: command(db, settings, args)))
    except (ConfigError, UsageError, TargetParseError) as exc:
        prefix = "config error" if isinstance(exc, ConfigError) else "error"
        print(f"tracker-watch: {prefix}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_FAIL
    except Exception as exc:  # never a traceback: one line naming what failed (the daemon's log has the details)
        print(f"tracker-watch: error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
              file=sys.stderr)
        return EXIT_FAIL


async def _run_daemon(settings: Settings) -> int:
    from tracker_watch.daemon import Daemon
    from tracker_watch.evidence.spool import SpoolError, SpoolLocked

    try:
        await Daemon(settings).run()
    except SpoolLocked as exc:  # a second daemon on the same state directory: refuse, touch nothing
        logmod.get("tracker_watch.daemon").error("spool_locked", error=str(exc))
        print(f"tracker-watch: error: {exc} (is another daemon running with this state_dir?)", file=sys.stderr)
        return EXIT_FAIL
    except SpoolError as exc:  # e.g. a read-only state directory: no spool, no evidence; refuse to run
        logmod.get("tracker_watch.daemon").error("spool_unusable", error=str(exc))
        print(f"tracker-watch: error: {exc}", file=sys.stderr)
        return EXIT_FAIL
    return EXIT_OK


async def _with_db(settings: Settings, fn: Callable[[Any], Awaitable[int]], migrate: bool = True) -> int:
    import asyncpg

    from tracker_watch.ledger.db import Database

    db = Database(settings)
    try:
        await db.start(run_migrations=migrate)
        return await fn(db)
    except OSError as exc:
        print(f"tracker-watch: database unreachable: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except (asyncpg.IntegrityConstraintViolationError, asyncpg.DataError) as exc:
        # input the checks above let through but the database's constraints refuse: still bad input
        print(f"tracker-watch: error: refused by the database: {str(exc).splitlines()[0]}", file=sys.stderr)
        return EXIT_USAGE
    except asyncpg.PostgresError as exc:
        print(f"tracker-watch: database error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
              file=sys.stderr)
        return EXIT_FAIL
    finally:
        await db.stop()


async def _migrate(db: Any, settings: Settings, args: argparse.Namespace) -> int:
    version = await db.pool.fetchval("SELECT max(version) FROM schema_migrations")
    print(f"schema {settings.database.schema} at migration {version:04d}")
    return EXIT_OK


def read_target_input(text: str) -> TargetSpec:
    """A path to an existing file (or ending in .torrent) is read as a .torrent; anything else is text."""
    path = Path(text)
    if text.endswith(".torrent") or (len(text) < 4096 and path.is_file()):
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read {text}: {exc.strerror}") from None
        if not data.startswith(b"d"):
            raise TargetParseError(f"{text} is not a .torrent file (it does not start with a bencoded dictionary)")
        return parse_target(data)
    return parse_target(text)


def _check_target_add(args: argparse.Namespace) -> None:
    """Parse before touching the database: bad input writes nothing (and starts nothing)."""
    args.spec = read_target_input(args.input)
    if not args.work.strip() or not args.owner.strip():
        raise UsageError("--work and --owner must not be empty")


async def _target_add(db: Any, settings: Settings, args: argparse.Namespace) -> int:
    from tracker_watch.ledger.targets import TargetStore

    row, created = await TargetStore(db.pool).register(args.spec, args.owner.strip(), args.work.strip(),
                                                        actor=f"cli:{os.environ.get('USER', 'unknown')}")
    verb = "registered" if created else "already registered"
    print(f"target {row.id} {verb}: {row.key} ({args.spec.kind}) for {row.holder!r} / {row.work!r}")
    if args.spec.ignored_peer_hints:
        print(f"note: {args.spec.ignored_peer_hints} x.pe peer hint(s) ignored: only literal ip:port or [ipv6]:port "
              "are used (names are never resolved)")
    return EXIT_OK


async def _target_list(db: Any, settings: Settings, args: argparse.Namespace) -> int:
    from tracker_watch.ledger.targets import TargetStore

    print(f"{'id':>5}  {'status':<7} {'infohash':<64}  {'pieces':>6}  holder / work / name")
    for r in await TargetStore(db.pool).list_all():
        pieces = str(r.num_pieces) if r.num_pieces is not None else "-"
        print(f"{r.id:>5}  {r.status:<7} {r.key:<64}  {pieces:>6}  {r.holder} / {r.work} / "
              f"{r.name or r.display_name or '(metadata unknown)'}")
        if r.peer_hints:
            print(f"{'':>5}  peer hints: {' '.join(r.peer_hints)}")
        if r.error:
            print(f"{'':>5}  cannot be watched: {r.error} (fix, then `target resume {r.id}`)")
    return EXIT_OK


async def _peers(db: Any, settings: Settings, args: argparse.Namespace) -> int:
    from tracker_watch.ledger.observations import ObservationStore

    target = None
    if args.target is not None:
        async with db.pool.acquire() as conn:
            target = await cli_ledger.target_id(conn, args.target)
        if target is None:
            raise UsageError(f"no target {args.target!r} (see `tracker-watch target list`)")
    print_peer_table(await ObservationStore(db.pool).latest_by_peer(target))
    return EXIT_OK


async def _token_create(db: Any, settings: Settings, args: argparse.Namespace) -> int:
    from tracker_watch.api.auth import create_token

    if not args.name.strip():
        raise UsageError("--name must not be empty")
    async with db.pool.acquire() as conn, conn.transaction():
        token_id, token = await create_token(conn, args.role, args.name.strip(),
                                             f"cli:{os.environ.get('USER', 'unknown')}")
    print(f"token {token_id} ({args.role} {args.name.strip()!r}) — shown once, store it now:")
    print(token)
    return EXIT_OK


async def _token_list(db: Any, settings: Settings, args: argparse.Namespace) -> int:
    for r in await db.pool.fetch("SELECT id, role, name, created_at, revoked_at FROM api_tokens ORDER BY id"):
        state = f"revoked {r['revoked_at']:%Y-%m-%d %H:%M}" if r["revoked_at"] else "active"
        print(f"{r['id']:>5} {r['role']:<13} {r['name']:<30} created {r['created_at']:%Y-%m-%d %H:%M}  {state}")
    return EXIT_OK


async def _token_revoke(db: Any, settings: Settings, args: argparse.Namespace) -> int:
    done = await db.pool.fetchval("UPDATE api_tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL "
                                  "RETURNING id", args.id)
    if done is None:
        return cli_ledger.usage(f"no active token {args.id}")
    await db.pool.execute("INSERT INTO audit_log (actor, action, object) VALUES ($1, 'token.revoke', $2)",
                          f"cli:{os.environ.get('USER', 'unknown')}", f"token:{args.id}")
    print(f"token {args.id} revoked")
    return EXIT_OK


def print_peer_table(rows: Sequence[Any], out: Any = None) -> None:
    out = out or sys.stdout
    print(f"{'target':>6}  {'peer':<22} {'client':<24} {'source':<9} {'grade':<10} {'advertised':>10} "
          f"{'verified':>8}  {'rows':>4}", file=out)
    for r in rows:
        adv = f"{r['pieces_advertised']}/{r['num_pieces']}" if r["pieces_advertised"] is not None else "-"
        peer = f"{r['ip']}:{r['port']}"
        print(f"{r['target_id']:>6}  {peer:<22} {(r['client'] or '-')[:24]:<24} {r['source']:<9} {r['grade']:<10} "
              f"{adv:>10} {r['pieces_verified']:>8}  {r['observations']:>4}", file=out)


DbCommand = Callable[[Any, Settings, argparse.Namespace], Coroutine[Any, Any, int]]
# every command that works on the database: (db, settings, args) → exit code
async def _target_status(db: Any, settings: Settings, args: argparse.Namespace) -> int:
    from tracker_watch.ledger.targets import TargetStore

    status = {"pause": "paused", "resume": "active", "delete": "deleted"}[args.action]
    if not await TargetStore(db.pool).set_status(args.id, status, actor="cli"):
        raise UsageError(f"no target {args.id} (see `tracker-watch target list`)")
    print(f"target {args.id} {status}")
    return EXIT_OK


async def _strikes_list(db: Any, settings: Settings, args: argparse.Namespace) -> int:
    if args.subject is not None and not await db.pool.fetchval("SELECT 1 FROM subjects WHERE id = $1", args.subject):
        raise UsageError(f"no subject {args.subject}")
    return await cli_strikes.strikes_list(db, settings, args)


_COMMANDS: dict[tuple[str, str | None], DbCommand] = {
    ("migrate", None): _migrate,
    ("target", "add"): _target_add,
    ("target", "list"): _target_list,
    ("target", "pause"): _target_status,
    ("target", "resume"): _target_status,
    ("target", "delete"): _target_status,
    ("peers", None): _peers,
    ("token", "create"): _token_create,
    ("token", "list"): _token_list,
    ("token", "revoke"): _token_revoke,
    ("ledger", "verify"): cli_ledger.verify,
    ("ledger", "purge"): cli_ledger.purge,
    ("evidence", "export"): cli_ledger.export,
    **cli_strikes.COMMANDS,
    **cli_nodes.COMMANDS,
    ("strikes", "list"): _strikes_list,
}
_CHECKS: dict[tuple[str, str | None], Callable[[argparse.Namespace], None]] = {
    ("target", "add"): _check_target_add, ("isp", "set"): check_isp_set}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
