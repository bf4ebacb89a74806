"""DESIGN.md's layering, checked: data flows one way through the package."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "tracker_watch"
FORBIDDEN = {  # layer → the parts of the package it must never import
    "domain": {"api", "console", "daemon", "demo", "evidence", "ledger", "swarm", "cli", "metrics"},
    "swarm": {"ledger", "api", "console"},
    "ledger": {"swarm", "api", "console"},
    "api": {"swarm"},
}
EXCEPTIONS: set[tuple[str, str]] = set()  # none: the swarm layer reads targets through swarm/targets.py


def imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
    return out


def test_every_layer_imports_only_what_it_may() -> None:
    broken = []
    for layer, forbidden in FORBIDDEN.items():
        for path in sorted((PACKAGE / layer).rglob("*.py")):
            rel = str(path.relative_to(PACKAGE))
            for module in imports(path):
                parts = module.split(".")
                if parts[0] == "tracker_watch" and len(parts) > 1 and parts[1] in forbidden \
                        and (rel, module) not in EXCEPTIONS:
                    broken.append(f"{rel} imports {module}")
    assert not broken, broken


def test_domain_does_no_io() -> None:
    io_modules = {"asyncio", "asyncpg", "aiohttp", "socket", "subprocess", "os", "shutil", "pathlib"}
    conversions_only = {("domain/leases.py", "socket"),  # inet_pton/inet_ntop: fast address parsing, no I/O
                        ("domain/chain_v2.py", "socket")}
    used = {(str(p.relative_to(PACKAGE)), m) for p in (PACKAGE / "domain").rglob("*.py") for m in imports(p)
            if m.split(".")[0] in io_modules} - conversions_only
    assert not used, used
