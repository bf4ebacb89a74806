"""Checks the command line makes before it touches anything: bad input is one line and exit code 2."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from urllib.parse import urlsplit

from tracker_watch.config import Settings


class UsageError(Exception):
    """Bad input: reported on one line, exit code 2."""


def check_database_meant(settings: Settings, config: Path | None, init: bool) -> None:
    """Refuse to create an embedded database nobody asked for: a command run without the configuration the
    daemon uses would otherwise start an empty database of its own and act on that (a token the daemon
    does not know, a target it never sees)."""
    if settings.database.dsn or init:
        return
    pgdata = settings.node.state_dir / "pgdata"
    if (pgdata / "PG_VERSION").exists():
        return
    source = f"configuration {config}" if config else "no configuration file (--config or TRACKER_WATCH_CONFIG)"
    raise UsageError(f"no database at {pgdata} ({source}, database.dsn empty); if that is where it should be, "
                     "add --init to create it there, else name the daemon's configuration with --config")


def check_isp_set(args: argparse.Namespace) -> None:
    """What the ISP's delivery needs, checked before anything is written ('' clears a setting)."""
    from tracker_watch.domain.contacts import is_placeholder

    if not args.name.strip() or len(args.name) > 200:
        raise UsageError("the ISP name must be 1 to 200 characters")
    if args.webhook and not _http_url(args.webhook):
        raise UsageError(f"--webhook {args.webhook!r} is not an http:// or https:// URL")
    if args.drop_dir and not Path(args.drop_dir).is_dir():
        raise UsageError(f"--drop-dir {args.drop_dir!r} is not an existing directory (create it first)")
    if args.drop_dir:
        args.drop_dir = str(Path(args.drop_dir).resolve())  # the daemon's working directory may differ
    if args.abuse_email:
        if not re.fullmatch(r"[^@\s]+@[^@\s]+", args.abuse_email):
            raise UsageError(f"--abuse-email {args.abuse_email!r} is not an e-mail address")
        if is_placeholder(args.abuse_email):
            print(f"tracker-watch: WARNING: --abuse-email {args.abuse_email} is a placeholder (reserved domain); "
                  "notices to this ISP will name an address nobody reads", file=sys.stderr)


def _http_url(text: str) -> bool:
    try:
        url = urlsplit(text)
        url.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:  # also an unbalanced [IPv6
        return False
    return url.scheme in ("http", "https") and bool(url.hostname)
