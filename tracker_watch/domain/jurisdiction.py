"""Which country an address is in, offline (iptocc ships its data), and whether the policy covers it.

Loopback, private, link-local and other non-public addresses have no country; the policy may map them
to a test country so that a local swarm exercises the whole path. In production it maps them to none,
so they never start a strike.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection

import iptocc


def country_of(ip: str, test_country: str = "") -> str | None:
    addr = ipaddress.ip_address(ip)
    if not addr.is_global:
        return test_country or None
    code: str | None = iptocc.country_code(str(addr))
    return code


def covered(country: str | None, jurisdictions: Collection[str]) -> bool:
    """An empty jurisdiction list covers every country, but never an address without one."""
    return country is not None and (not jurisdictions or country in jurisdictions)
