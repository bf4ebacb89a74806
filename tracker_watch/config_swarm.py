"""The [swarm] and [verify] sections: the BitTorrent session and how peers are verified, with their own
cross-checks. Kept apart from config.py (the other sections and the loading); `tracker_watch.config`
re-exports them and stays the import point."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Literal

from tracker_watch.config_values import ConfigError, parse_endpoint, show
from tracker_watch.config_values import doc as _doc
from tracker_watch.domain.addresses import AddressPolicy, AddressPolicyError


@dataclass(frozen=True)
class SwarmSettings:
    listen_interfaces: list[str] = field(default_factory=lambda: ["0.0.0.0:6881", "[::]:6881"], metadata=_doc(
        "Addresses (ip:port) the BitTorrent session listens on."))
    outgoing_interfaces: list[str] = field(default_factory=list, metadata=_doc(
        "Local addresses outgoing peer and tracker connections bind to; empty lets the OS choose."))
    dht_enabled: bool = field(default=True, metadata=_doc(
        "Run a DHT node (read-only: it never answers queries). Useless without bootstrap nodes."))
    dht_bootstrap_nodes: list[str] = field(default_factory=list, metadata=_doc(
        "DHT routers as host:port. Empty by default so that nothing public is contacted."))
    dht_restrict_ips: bool = field(default=True, metadata=_doc(
        "Ignore DHT nodes on private and loopback addresses (turn off only for a local test DHT)."))
    dht_query_interval_s: float = field(default=300.0, metadata=_doc(
        "How often each swarm asks the DHT for peers.", min=5.0, max=86400.0))
    pex_enabled: bool = field(default=True, metadata=_doc("Learn peers through peer exchange (ut_pex)."))
    connections_limit: int = field(default=200, metadata=_doc(
        "Peer connections for the whole session.", min=2, max=65535))
    connection_speed: int = field(default=30, metadata=_doc(
        "New outgoing connection attempts per second.", min=1, max=10_000))
    alert_queue_size: int = field(default=100_000, metadata=_doc(
        "libtorrent alert queue size; overflow is counted as dropped alerts.", min=1000, max=10_000_000))
    payload_dir: str = field(default="", metadata=_doc(
        "Where pieces being verified live (use a tmpfs). Empty: $RUNTIME_DIRECTORY, else /dev/shm, "
        "else <state_dir>/payload."))
    peer_refresh_s: float = field(default=60.0, metadata=_doc(
        "How often connected peers of a swarm are re-read for their advertised pieces.", min=1.0, max=3600.0))
    max_peers_per_swarm: int = field(default=500, metadata=_doc(
        "Peer addresses tracked (and connections made) per swarm; more are counted as a limit hit.", min=2, max=65535))
    allowed_networks: list[str] = field(default_factory=list, metadata=_doc(
        "Networks (CIDR) outside global unicast whose addresses may still be dialled and recorded as peers "
        "and used as trackers. Empty: none, so private, loopback, link-local, carrier-grade NAT, multicast "
        "and reserved addresses that trackers, the DHT or peers name are ignored. Local test swarms and "
        "labs name theirs, e.g. [\"127.0.0.0/8\", \"::1/128\"]."))
    denied_networks: list[str] = field(default_factory=list, metadata=_doc(
        "Networks (CIDR) never dialled nor recorded even when global (e.g. your own data centre's); they "
        "override allowed_networks."))


@dataclass(frozen=True)
class VerifySettings:
    method: Literal["probe", "session"] = field(default="probe", metadata=_doc(
        "probe: each candidate peer is asked for a piece over a connection of our own to that peer alone (see "
        "docs/verification.md); session: libtorrent's session downloads wanted pieces from whoever it picks "
        "(kept for comparison; real distributors may go unproven)."))
    probe_interface: str = field(default="", metadata=_doc(
        "Address our verification connections come from. Use a second address of this host, not the "
        "session's own: many clients accept one connection per address and drop a second. Empty: the first "
        "of swarm.outgoing_interfaces.", pattern=r"[0-9A-Fa-f:.]*"))
    listen_port: int = field(default=0, metadata=_doc(
        "Port of the verifier's own listener, on the probe address (and the session's IPv6 one), which is the "
        "port we announce to trackers: a peer that dials us — the only way to reach one behind NAT — is "
        "verified on that connection. 0: any free port (fix one for a firewall).", min=0, max=65535))
    probe_concurrency: int = field(default=32, metadata=_doc(
        "Verification connections open at once (all swarms together).", min=1, max=4096))
    lanes: int = field(default=2, metadata=_doc(
        "Lanes at once: single-peer libtorrent sessions on the probe address for what our TCP connection cannot "
        "do — pure v2 torrents, and peers it could not reach (uTP-only). 0: no lanes.", min=0, max=64))
    probe_encryption: Literal["prefer", "require", "plaintext"] = field(default="prefer", metadata=_doc(
        "MSE/PE on verification connections: prefer (fall back to plaintext), require, or plaintext."))
    probe_timeout_s: float = field(default=120.0, metadata=_doc(
        "Longest one verification connection may take, handshakes to hash check.", min=5.0, max=600.0))
    retry_base_s: float = field(default=15.0, metadata=_doc(
        "A candidate that could not be verified is tried again after this long, doubling each time …",
        min=1.0, max=3600.0))
    retry_max_s: float = field(default=600.0, metadata=_doc("… up to this long between tries.", min=1.0,
                                                            max=86400.0))
    probes_per_peer_per_day: int = field(default=24, metadata=_doc(
        "Most verification connections to one IP per target per day.", min=1, max=1000))
    pieces_per_peer: int = field(default=1, metadata=_doc(
        "Pieces to verify from each peer (IP) per target per day.", min=1, max=64))
    bytes_per_peer_per_day: int = field(default=64 * 2**20, metadata=_doc(
        "Most payload bytes taken from one IP address per target per day.", min=16384, max=2**40))
    bytes_per_swarm_per_day: int = field(default=512 * 2**20, metadata=_doc(
        "Most payload bytes downloaded per target per day, all peers together.", min=16384, max=2**40))
    max_wanted_pieces: int = field(default=4, metadata=_doc(
        "Pieces asked for at once per swarm (one per peer being verified).", min=1, max=64))
    max_attempts_per_peer: int = field(default=3, metadata=_doc(
        "Pieces asked for on an address's behalf that others delivered before it rests (while others could "
        "serve in its place).", min=1, max=100))
    redial_s: float = field(default=300.0, metadata=_doc(
        "A listed peer not yet verified gets a fresh chance (a piece wanted as it is dialled) this often.",
        min=1.0, max=86400.0))


def check_swarm(swarm: SwarmSettings) -> None:
    for item in swarm.listen_interfaces:
        parse_endpoint("swarm.listen_interfaces", item)
    for item in swarm.outgoing_interfaces:
        try:
            ipaddress.ip_address(item.strip("[]"))
        except ValueError:
            raise ConfigError(f"swarm.outgoing_interfaces: {show(item)} is not an IP address") from None
    for item in swarm.dht_bootstrap_nodes:
        parse_endpoint("swarm.dht_bootstrap_nodes", item, host_names=True)
    try:
        AddressPolicy.from_settings(swarm.allowed_networks, swarm.denied_networks)
    except AddressPolicyError as exc:
        raise ConfigError(str(exc)) from None


def check_verify(verify: VerifySettings) -> None:
    if verify.probe_interface:
        try:
            ipaddress.ip_address(verify.probe_interface)
        except ValueError:
            raise ConfigError(f"verify.probe_interface: {show(verify.probe_interface)} is not an IP address") \
                from None
    if verify.retry_base_s > verify.retry_max_s:
        raise ConfigError("verify.retry_base_s: must not exceed verify.retry_max_s")
