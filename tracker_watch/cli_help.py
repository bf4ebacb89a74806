"""Help for every subcommand (a description and examples) and the options every subcommand accepts.

`--config` and `--init` are accepted before or after the subcommand (`tracker-watch --config F peers` and
`tracker-watch peers --config F` are the same), so a copied command line cannot silently fall back to the
default state directory because the option landed on the wrong side. A test checks that every subcommand
here has a description and examples.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

C = "tracker-watch --config tw.toml"
# (command path) → (description, examples)
HELP: dict[str, tuple[str, list[str]]] = {
    "run": ("Run the monitoring daemon until SIGTERM or SIGINT: database (migrations), evidence writer, libtorrent "
            "session, trackers, targets, API and metrics. Logs are JSON lines on stdout (console format on a TTY).",
            [f"{C} run --init        # first start: create the embedded database if none exists"]),
    "migrate": ("Apply the database migrations and exit (the daemon also applies them at start).",
                [f"{C} migrate --init    # create the embedded database and the schema"]),
    "target": ("Register works' swarms (targets) and change their status.", [f"{C} target list"]),
    "target add": ("Register a v1 or v2 infohash, a magnet link or a .torrent file as a target. Bad input writes "
                   "nothing (exit 2). A running daemon picks the target up within daemon.target_poll_s.",
                   [f"{C} target add 'magnet:?xt=urn:btih:…&tr=…' --work 'Film' --owner 'Studio'",
                    f"{C} target add film.torrent --work 'Film' --owner 'Studio'"]),
    "target list": ("List registered targets, with the reason a target could not be watched.", [f"{C} target list"]),
    "target pause": ("Stop watching a target (its evidence is kept).", [f"{C} target pause 3"]),
    "target resume": ("Watch a paused target again, or retry one set aside as unwatchable.",
                      [f"{C} target resume 3"]),
    "target delete": ("Stop watching a target and hide it (its evidence is kept).", [f"{C} target delete 3"]),
    "peers": ("The evidence per peer address as the ledger holds it: best grade, pieces advertised and verified.",
              [f"{C} peers", f"{C} peers --target 1"]),
    "token": ("API bearer tokens (rights holders, ISPs, operators).", [f"{C} token list"]),
    "token create": ("Create an API token; it is printed once, only its hash is stored.",
                     [f"{C} token create --role rightsholder --name 'Demo Studios'"]),
    "token list": ("List API tokens (never the secrets).", [f"{C} token list"]),
    "token revoke": ("Revoke an API token; it is refused from its next request on.", [f"{C} token revoke 3"]),
    "ledger": ("The evidence ledger: hash chains, signing key, retention.", [f"{C} ledger verify"]),
    "ledger verify": ("Walk every node's evidence hash chain; exit 1 naming the first tampered row.",
                      [f"{C} ledger verify"]),
    "ledger pubkey": ("Print this node's checkpoint signing key: the fingerprint to publish, and the PEM.",
                      [f"{C} ledger pubkey"]),
    "ledger purge": ("Redact evidence older than evidence.retention_days that no strike relies on.",
                     [f"{C} ledger purge --dry-run"]),
    "evidence": ("Evidence packages anybody can check with the verify.py inside.",
                 [f"{C} evidence export --ip 127.0.0.11 --target 1 --seal"]),
    "evidence export": ("Write one peer address's evidence in one target as a zip (default: "
                        "evidence-target<ID>-<IP>-<UTC time>.zip in the current directory; --out names a file or "
                        "an existing directory).",
                        [f"{C} evidence export --ip 127.0.0.11 --target 1 --seal --out exports/",
                         "unzip -d pkg exports/evidence-*.zip && python3 pkg/verify.py pkg"]),
    "isp": ("ISPs: their lease data (who had which address when) and how notices reach them.", [f"{C} isp list"]),
    "isp set": ("Create or update an ISP: abuse address and delivery (an https:// webhook or an existing "
                "drop folder).",
                [f"{C} isp set 'Kaz Telecom' --abuse-email abuse@telecom.kz --webhook https://telecom.kz/acns",
                 f"{C} isp set 'Kaz Telecom' --drop-dir /var/spool/acns"]),
    "isp import": ("Import lease data from CSV: prefix,port_from,port_to,valid_from,valid_to,subscriber. A bad or "
                   "overlapping row is named by its line number and nothing is imported.",
                   [f"{C} isp import leases.csv --isp 'Kaz Telecom'"]),
    "isp list": ("ISPs with their lease counts and notice delivery.", [f"{C} isp list"]),
    "strikes": ("The strike ledger (graduated response).", [f"{C} strikes list"]),
    "strikes list": ("Active strikes, newest first (--all: voided and superseded too).",
                     [f"{C} strikes list", f"{C} strikes list --subject 4 --all"]),
    "strikes rebuild": ("Re-derive every strike from the evidence; a sound ledger comes out unchanged.",
                        [f"{C} strikes rebuild"]),
    "strikes void": ("Void a strike (dispute upheld), re-derive what follows, and record who and why.",
                     [f"{C} strikes void 17 --reason 'router compromised'"]),
    "notices": ("The notices outbox: ACNS XML and JSON notices to ISPs.", [f"{C} notices list"]),
    "notices list": ("Notices and their delivery state.", [f"{C} notices list"]),
    "notices show": ("Print one notice as the ISP receives it.", [f"{C} notices show 2 --format xml"]),
    "nodes": ("The fleet: each node's state (alive, drained, silent, stopped), version, swarm leases / capacity, "
              "targets, spool depth and last heartbeat.", [f"{C} nodes"]),
    "node": ("Drain a node before maintenance, undrain it after.", [f"{C} node drain node-3"]),
    "node drain": ("Hand every lease of the node back (within daemon.target_poll_s) and take no new ones; it keeps "
                   "running idle, also across restarts, until `node undrain`.", [f"{C} node drain node-3",
                                                                                  f"{C} nodes"]),
    "node undrain": ("Let a drained node take its share of swarms again.", [f"{C} node undrain node-3"]),
    "demo": ("The whole path on a local swarm and a throw-away embedded PostgreSQL, in under a minute; leaves "
             "nothing behind.", ["tracker-watch demo"]),
    "lab": ("A local swarm to run the daemon against: a tracker, seeders, a decoy and a liar on loopback "
            "addresses. Prints the magnet to register and writes it, lease data for an ISP and an empty ISP drop "
            "folder into --dir. Runs until SIGINT/SIGTERM.",
            ["tracker-watch lab                    # tracker on 127.0.0.1:6969, files in ./lab",
             "tracker-watch lab --seeders 127.0.0.21,127.0.0.22 --no-liar --tracker 127.0.0.1:7070"]),
}


def add_common_options(parser: argparse.ArgumentParser, top: bool) -> None:
    """--config and --init; on subcommands they default to 'not given', so the top-level value stands."""
    default: object = None if top else argparse.SUPPRESS
    parser.add_argument("--config", type=Path, default=default, metavar="FILE",
                        help="TOML settings file (default: $TRACKER_WATCH_CONFIG; TRACKER_WATCH_* variables "
                             "override it)")
    parser.add_argument("--init", action="store_true", default=False if top else argparse.SUPPRESS,
                        help="allow creating a new embedded database (database.dsn empty) under node.state_dir")


def decorate(parser: argparse.ArgumentParser) -> None:
    """Give every subcommand its description, examples and the common options."""
    for path, sub in subcommands(parser):
        description, examples = HELP[path]
        sub.description = description
        sub.epilog = "examples:\n" + "\n".join(f"  {e}" for e in examples)
        sub.formatter_class = argparse.RawDescriptionHelpFormatter
        if not any(isinstance(a, argparse._SubParsersAction) for a in sub._actions):
            add_common_options(sub, top=False)


def subcommands(parser: argparse.ArgumentParser, prefix: str = "") -> Iterator[tuple[str, argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                path = f"{prefix} {name}".strip()
                yield path, sub
                yield from subcommands(sub, path)
