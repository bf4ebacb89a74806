"""How the engine finds peers beyond its trackers: the DHT, the magnet's peer hints (x.pe) and PEX.

The DHT: torrents are added with `disable_dht`, so we never announce ourselves; each swarm is looked up with
`session.dht_get_peers` (at once when it starts, then round-robin over every swarm, spread evenly over
`swarm.dht_query_interval_s`), and the replies are routed to swarms by infohash (a v2 swarm by its truncated
hash, BEP 52). PEX is libtorrent's (`ut_pex`), on unless `swarm.pex_enabled` is off. Peer hints are dialled
(and offered to the verifier) when the swarm starts, under the same address policy as any other peer.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Mapping
from typing import Any

import libtorrent as lt

from tracker_watch.config import SwarmSettings
from tracker_watch.domain.evidence import Source, normalize_ip
from tracker_watch.domain.peers import Endpoint
from tracker_watch.swarm.sampling import endpoint
from tracker_watch.swarm.swarm import Swarm


class Discovery:
    def __init__(self, settings: SwarmSettings, session: Callable[[], Any],
                 swarms: Callable[[], Mapping[str, Swarm]]) -> None:
        self.settings = settings
        self._session = session  # the live session, or None once stopped
        self._swarms = swarms
        self.by_hash: dict[bytes, Swarm] = {}  # DHT infohash (20 bytes) → swarm: where a reply goes
        self._hashes_of: dict[str, set[bytes]] = {}  # swarm key → its `by_hash` keys: a stop forgets it in O(1)

    def torrent_flags(self) -> int:
        """Flags every torrent is added with: no DHT announce (we look up), no LSD, PEX as configured."""
        flags = lt.torrent_flags.disable_dht | lt.torrent_flags.disable_lsd
        if not self.settings.pex_enabled:
            flags |= lt.torrent_flags.disable_pex
        return int(flags)

    def started(self, swarm: Swarm, add_peer: Callable[[str, Endpoint, Source], None]) -> None:
        """A swarm started: indexed, looked up at once (not a whole round-robin later), its peer hints dialled."""
        self.index(swarm, swarm.spec.infohash_v1, swarm.spec.infohash_v2)
        if self.settings.dht_enabled:
            self.lookup(swarm)
        for peer in swarm.spec.peers:
            add_peer(swarm.key, (normalize_ip(peer[0]), peer[1]), Source.MAGNET)

    def index(self, swarm: Swarm, v1: bytes | None, v2: bytes | None) -> None:
        """Route DHT replies for these infohashes (also those learnt with the metadata) to `swarm`."""
        for h in (v1, v2[:20] if v2 else None):
            if h:
                self.by_hash[h] = swarm
                self._hashes_of.setdefault(swarm.key, set()).add(h)

    def forget(self, swarm: Swarm) -> None:
        for h in self._hashes_of.pop(swarm.key, ()):
            if self.by_hash.get(h) is swarm:
                del self.by_hash[h]

    def clear(self) -> None:
        self.by_hash.clear()
        self._hashes_of.clear()

    def lookup(self, swarm: Swarm) -> None:
        session = self._session()
        for h in (swarm.spec.infohash_v1, swarm.spec.infohash_v2):
            if h and session is not None:
                session.dht_get_peers(lt.sha1_hash(h[:20]))  # v2: the truncated hash (BEP 52)
                return

    def on_reply(self, alert: Any) -> None:
        swarm = self.by_hash.get(bytes(alert.info_hash.to_bytes()))
        if swarm is None:
            return
        for peer in alert.peers():
            swarm.add_peer(endpoint(peer), Source.DHT)

    async def run(self) -> None:
        """Round-robin dht_get_peers over all swarms, spread evenly over the query interval."""
        interval = self.settings.dht_query_interval_s
        await asyncio.sleep(random.uniform(1.0, 3.0))
        while True:
            swarms = list(self._swarms().values())
            if not swarms:
                await asyncio.sleep(1.0)
                continue
            for swarm in swarms:
                if not swarm.closed:
                    self.lookup(swarm)
                await asyncio.sleep(interval / len(swarms))
