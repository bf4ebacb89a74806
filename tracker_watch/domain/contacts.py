"""Placeholder contact addresses: reserved domains (RFC 2606, RFC 6761) that no real mailbox lives at.

A notice whose reply address or ISP abuse address is a placeholder reaches nobody who can answer; the
daemon and the CLI say so loudly instead of sending it quietly.
"""

from __future__ import annotations

RESERVED_TLDS = frozenset({"invalid", "example", "test", "localhost"})
RESERVED_DOMAINS = frozenset({"example.com", "example.net", "example.org"})


def is_placeholder(email: str) -> bool:
    domain = email.rpartition("@")[2].strip().lower().rstrip(".")
    if not domain:
        return True
    if domain.rpartition(".")[2] in RESERVED_TLDS:
        return True
    return any(domain == d or domain.endswith("." + d) for d in RESERVED_DOMAINS)
