"""libtorrent session settings for a monitor: never upload, never queue, contact only what is configured.

Pure: builds the settings dictionary; swarm/engine.py applies it. See DESIGN.md "libtorrent facts" for
why each zero-upload setting is needed (one alone leaks on loopback and LAN peers).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import libtorrent as lt

from tracker_watch.config import SwarmSettings
from tracker_watch.domain.addresses import AddressPolicy

ALERT_MASK = (
    lt.alert_category.error
    | lt.alert_category.status
    | lt.alert_category.peer
    | lt.alert_category.connect
    | lt.alert_category.piece_progress
    | lt.alert_category.block_progress
    | lt.alert_category.upload  # block_uploaded_alert: must never fire; watched as a tripwire
    | lt.alert_category.dht_operation
    | lt.alert_category.storage  # read_piece_alert: verified pieces are read back and hashed by us
)

# Settings that make the session a pure observer. Kept apart so tests can assert each one.
ZERO_UPLOAD: dict[str, Any] = {
    "choking_algorithm": 0,          # fixed_slots_choker: the rate-based one always grants one slot
    "unchoke_slots_limit": 0,        # no regular unchoke slots
    "allowed_fast_set_size": 0,      # no BEP 6 allowed-fast pieces that bypass choking
}

LISTEN_BACKLOG = 1024  # the kernel caps it at net.core.somaxconn

PEER_CLASSES = ("global_peer_class_id", "tcp_peer_class_id", "local_peer_class_id")


def session_settings(s: SwarmSettings, user_agent: str) -> dict[str, Any]:
    pack: dict[str, Any] = {
        "listen_interfaces": ",".join(s.listen_interfaces),
        "outgoing_interfaces": ",".join(s.outgoing_interfaces),
        "user_agent": user_agent,
        "alert_mask": int(ALERT_MASK),
        "alert_queue_size": s.alert_queue_size,
        # nothing public unless configured
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_dht": s.dht_enabled,
        "dht_bootstrap_nodes": ",".join(s.dht_bootstrap_nodes),
        "dht_read_only": True,       # never answer DHT queries: we are not part of the routing fabric
        # loopback/private DHT nodes are only useful in a local test swarm
        "dht_restrict_routing_ips": s.dht_restrict_ips,
        "dht_restrict_search_ips": s.dht_restrict_ips,
        # never queue or pause: every registered swarm is watched
        "active_downloads": -1,
        "active_seeds": -1,
        "active_checking": 16,
        "active_limit": -1,
        "dont_count_slow_torrents": False,
        # stay connected to seeds while we want nothing (see DESIGN.md "Staying in the swarm")
        "close_redundant_connections": False,
        "connections_limit": s.connections_limit,
        "connection_speed": s.connection_speed,
        # peers dial us in bursts (a tracker reply names us to many at once); libtorrent's default backlog of 5
        # dropped SYNs, and a client that gave up came back only at its next announce (bench/capacity_load.py)
        "listen_queue_size": LISTEN_BACKLOG,
        # ask one peer for a whole piece, so a verified (or failed) piece is attributable to it
        "whole_pieces_threshold": 600,
        "strict_end_game_mode": True,
        # no parole after a hash failure: a paroled peer may only take a piece nobody else has started, so one
        # that rejects the piece's blocks (BEP 6) left it started and nobody asked again — the piece stalled
        # for good (tests/swarm/test_smart_ban.py, 3 runs in 7). Whole pieces from one peer are asked for anyway
        # (above), and smart-ban still compares the failed piece's blocks with the good ones.
        "use_parole_mode": False,
    }
    pack.update(ZERO_UPLOAD)
    return pack


def new_session(pack: dict[str, Any]) -> Any:
    """A session from a settings dictionary (the bindings accept one; their stubs only know settings_pack)."""
    return lt.session(pack)  # type: ignore[call-overload]


def lowered_settings(pack: dict[str, Any], session: Any) -> dict[str, tuple[Any, Any]]:
    """Settings the session holds differently from what was asked, as {name: (asked, held)}.

    The configured ranges keep every value inside what libtorrent stores, but it still caps
    connections_limit at 80 % of the open-file limit (RLIMIT_NOFILE), which only the running process knows.
    """
    held = session.get_settings()
    return {name: (asked, held.get(name)) for name, asked in pack.items() if held.get(name) != asked}


def apply_zero_upload_peer_classes(session: Any) -> None:
    """The built-in local peer class (127/8, 10/8, 192.168/16 …) ignores unchoke slots by default."""
    for attr in PEER_CLASSES:
        class_id = getattr(lt.session, attr)
        pc = session.get_peer_class(class_id)
        pc["ignore_unchoke_slots"] = False
        session.set_peer_class(class_id, pc)


def ip_filter(policy: AddressPolicy, own_ips: Iterable[str], held: Iterable[str] = ()) -> Any:
    """libtorrent's IP filter from the address policy (later rules override earlier ones), our own
    addresses blocked too unless a lab allows their network, and `held` addresses for the moment (the
    verifier talks to them from the session's own address, and clients take one connection per address)."""
    ipf = lt.ip_filter()
    for first, last, blocked in policy.filter_ranges():
        ipf.add_rule(first, last, 1 if blocked else 0)
    for ip in [*policy.own_blocks(own_ips), *held]:
        ipf.add_rule(ip, ip, 1)
    return ipf
