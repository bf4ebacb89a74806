"""libtorrent's IP filter as the session keeps it: the address policy, our own addresses, and the peers the
session is kept off for a moment while the verifier talks to them from the session's own address (clients
take one connection per address, docs/verification.md)."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable, Iterable
from typing import Any

from tracker_watch.config import Settings
from tracker_watch.domain.addresses import AddressPolicy
from tracker_watch.domain.evidence import normalize_ip
from tracker_watch.swarm.settings import ip_filter
from tracker_watch.swarm.swarm import Swarm


def own_addresses(settings: Settings) -> set[str]:
    """Every address the node itself uses that the settings name: the session's listen and outgoing addresses,
    and in probe mode the verifier's (it listens and dials from verify.probe_interface). A tracker lists them
    back to us, under another port too; none of them may ever be a peer. Wildcards and interface names say
    nothing here: the addresses actually bound join as their listens succeed (engine)."""
    sw, v = settings.swarm, settings.verify
    named = [*sw.outgoing_interfaces, *(_host(i) for i in sw.listen_interfaces)]
    if v.method == "probe" and v.probe_interface:
        named.append(v.probe_interface)
    out = set()
    for text in named:
        try:
            addr = ipaddress.ip_address(text.strip("[]"))
        except ValueError:
            continue  # an interface name
        if not addr.is_unspecified:
            out.add(normalize_ip(str(addr)))
    return out


def _host(listen_interface: str) -> str:
    """'127.0.0.2:6881' → '127.0.0.2', '[::1]:0' → '::1', 'eth0' → 'eth0'."""
    host, sep, port = listen_interface.strip().rpartition(":")
    if not sep or not port.rstrip("s").isdigit() or (":" in host and not host.startswith("[")):
        return listen_interface.strip()
    return host


class SessionFilter:
    def __init__(self, session: Callable[[], Any], policy: AddressPolicy, own_ips: set[str],
                 swarms: Callable[[], Iterable[Swarm]]) -> None:
        self._session = session  # the live session, or None once stopped
        self.policy = policy
        self.own_ips = own_ips  # shared with the engine: grows as listens succeed
        self._swarms = swarms
        self._held: dict[str, int] = {}

    def apply(self) -> None:
        """The address policy inside libtorrent too: peers it learns by itself (PEX) and incoming
        connections from forbidden addresses are refused before they reach us."""
        if (session := self._session()) is not None:
            session.set_ip_filter(ip_filter(self.policy, self.own_ips, self._held))

    async def hold(self, ip: str) -> None:
        """Keep the session off `ip` while the verifier talks to it. Returns once the session's connections
        to it are gone (or after a few seconds: the verifier then simply tries)."""
        self._held[ip] = self._held.get(ip, 0) + 1
        self.apply()
        # only swarms whose last sample had it connected (reading every swarm's peers would not scale)
        swarms = [s for s in self._swarms() if any(p[0] == ip for p in s.connected)]
        for _ in range(30):
            if not any(ip in _connected_ips(s) for s in swarms):
                return
            await asyncio.sleep(0.1)

    def release(self, ip: str) -> None:
        left = self._held.get(ip, 0) - 1
        if left > 0:
            self._held[ip] = left
        else:
            self._held.pop(ip, None)
        self.apply()


def _connected_ips(swarm: Swarm) -> set[str]:
    return {normalize_ip(str(p.ip[0])) for p in swarm.handle.get_peer_info()} if not swarm.closed else set()
