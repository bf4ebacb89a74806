"""Command-line actions on the evidence ledger: verify, public key, purge, evidence export."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tracker_watch.config import Settings

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def usage(message: str) -> int:
    """Bad input: one line on stderr, exit code 2."""
    print(f"tracker-watch: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def add_parsers(sub: Any) -> None:
    ledger = sub.add_parser("ledger", help="the evidence hash chain").add_subparsers(dest="action", required=True)
    ledger.add_parser("verify", help="walk every node's chain; exit 1 at the first tampered row")
    ledger.add_parser("pubkey", help="print this node's checkpoint signing key: fingerprint (publish it) and PEM")
    purge = ledger.add_parser("purge", help="redact evidence past evidence.retention_days that nothing relies on")
    purge.add_argument("--dry-run", action="store_true", help="only count what would be redacted")
    evidence = sub.add_parser("evidence", help="evidence packages").add_subparsers(dest="action", required=True)
    export = evidence.add_parser("export", help="write one peer's evidence for one target as a zip")
    export.add_argument("--ip", required=True, help="peer IP address")
    export.add_argument("--target", required=True, help="target id, or its v1/v2 infohash in hex")
    export.add_argument("--from", dest="since", type=_when, help="ISO-8601 start (UTC if no zone)")
    export.add_argument("--to", dest="until", type=_when, help="ISO-8601 end, exclusive")
    export.add_argument("--out", type=Path, help="zip file to write, or an existing directory to write it in "
                        "(default: evidence-target<ID>-<IP>-<UTC time>.zip in the current directory)")
    export.add_argument("--seal", action="store_true",
                        help="first sign a checkpoint of this node's chain now (its unsealed rows are verified "
                             "first), instead of waiting up to evidence.checkpoint_interval_s")


def _when(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO-8601 date or time") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def verify(db: Any, settings: Settings, args: argparse.Namespace) -> int:
    from tracker_watch.ledger.verify import verify_ledger

    async with db.pool.acquire() as conn:
        report = await verify_ledger(conn)
    for n in report.nodes:
        line = f"node {n.node}: {n.rows} rows ({n.redacted} redacted), {n.checkpoints} signed checkpoints"
        if n.finding is None:
            print(f"{line}: intact")
        else:
            f = n.finding
            print(f"{line}: TAMPERED at position {f.seq} ({f.kind} {f.ref}): {f.problem} — {f.detail}")
    print(f"{'OK' if report.ok else 'FAILED'}: {report.rows} evidence rows checked")
    return EXIT_OK if report.ok else EXIT_FAIL


async def pubkey(db: Any, settings: Settings, args: argparse.Namespace) -> int:
    from tracker_watch.ledger import signing

    key = signing.load_or_create(settings.node.state_dir)
    raw = signing.public_raw(key)
    # the fingerprint is what third parties pin: `python3 verify.py --key FINGERPRINT package/`
    print(f"# node {settings.node.name}, key id {signing.key_id(raw)}")
    print(f"# fingerprint {signing.fingerprint(raw)}")
    print(signing.public_pem(key), end="")
    return EXIT_OK


async def purge(db: Any, settings: Settings, args: argparse.Namespace) -> int:
    from tracker_watch.ledger.retention import purge as run_purge

    cutoff = datetime.now(UTC) - timedelta(days=settings.evidence.retention_days)
    async with db.pool.acquire() as conn:
        r = await run_purge(conn, cutoff, settings.evidence.incident_window_s, args.dry_run)
    verb = "would redact" if r.dry_run else "redacted"
    print(f"{verb}: {r.incidents} incidents, {r.observations} observations, {r.incident_changes} incident changes "
          f"last seen before {cutoff:%Y-%m-%d %H:%M} UTC")
    return EXIT_OK


async def export(db: Any, settings: Settings, args: argparse.Namespace) -> int:
    from tracker_watch.domain.evidence import normalize_ip
    from tracker_watch.ledger.package import NotSealed, PackageError, SegmentInvalid, Selection, build

    try:
        ip = normalize_ip(args.ip)
    except ValueError:
        return usage(f"--ip {args.ip!r} is not an IP address")
    async with db.pool.acquire() as conn:
        found = await target_id(conn, args.target)
        if found is None:
            return usage(f"no target {args.target!r}")
        if args.seal and (refused := await _seal(conn, settings)) is not None:
            return usage(refused)
        try:
            data = await build(conn, Selection(found, ip, args.since, args.until))
        except SegmentInvalid as exc:
            return usage(str(exc))
        except NotSealed as exc:
            hint = "add --seal to sign one now" if exc.node == settings.node.name else \
                f"or run this export with --seal on node {exc.node}"
            print(f"tracker-watch: {exc} (here {settings.evidence.checkpoint_interval_s:g} s); {hint}", file=sys.stderr)
            return EXIT_FAIL
        except PackageError as exc:
            print(f"tracker-watch: {exc}", file=sys.stderr)
            return EXIT_FAIL
    out = export_path(args.out, found, ip)
    try:
        out.write_bytes(data)
    except OSError as exc:
        return usage(f"cannot write {out}: {exc.strerror}")
    print(f"wrote {out} ({len(data)} bytes); check it with: unzip -d pkg {out} && python3 pkg/verify.py "
          "--key FINGERPRINT pkg  (each node's FINGERPRINT: `tracker-watch ledger pubkey` on that node)")
    return EXIT_OK


async def _seal(conn: Any, settings: Settings) -> str | None:
    """Seal this node's chain now; a one-line reason when that is refused."""
    from tracker_watch.ledger import signing
    from tracker_watch.ledger.seal import SealRefused, seal

    key = signing.load_existing(settings.node.state_dir)
    if key is None:
        return (f"--seal: this machine holds no signing key for node {settings.node.name} "
                f"({settings.node.state_dir / signing.KEY_FILE})")
    try:
        await seal(conn, settings.node.name, key)
    except SealRefused as exc:
        return f"--seal refused: {exc}; run `tracker-watch ledger verify`"
    return None


def export_path(out: Path | None, target: int, ip: str) -> Path:
    """--out as given, or a clearly named file in --out (an existing directory) or the current directory."""
    name = f"evidence-target{target}-{ip.replace(':', '_')}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.zip"
    if out is None:
        return Path(name)
    return out / name if out.is_dir() or str(out).endswith("/") else out


async def target_id(conn: Any, text: str) -> int | None:
    if text.isdigit():
        found: int | None = await conn.fetchval("SELECT id FROM targets WHERE id = $1", int(text))
        return found
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        return None
    found = await conn.fetchval("SELECT id FROM targets WHERE infohash_v1 = $1 OR infohash_v2 = $1 ORDER BY id "
                                "LIMIT 1", raw)
    return found
