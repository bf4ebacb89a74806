"""The swarm engine: one libtorrent session per node, the swarms in it, and the alert router.

Torrents are added so that they are never queued or paused, never download anything by default
(`default_dont_download`; the planner wants single pieces to verify peers), never announce to the DHT
(we look peers up with `dht_get_peers`, see DESIGN.md) and never upload (swarm/settings.py).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import libtorrent as lt

from tracker_watch import SOFTWARE, log, metrics
from tracker_watch.config import Settings
from tracker_watch.domain.addresses import AddressPolicy
from tracker_watch.domain.evidence import Source, normalize_ip
from tracker_watch.domain.peers import Endpoint, PeerEvent
from tracker_watch.domain.targets import TargetParseError, meta_from_info
from tracker_watch.domain.torrents import TorrentMeta
from tracker_watch.swarm.alerts import AlertPump
from tracker_watch.swarm.discovery import Discovery
from tracker_watch.swarm.heap import tune_collector
from tracker_watch.swarm.ipfilter import SessionFilter, own_addresses
from tracker_watch.swarm.peer_reads import PeerReads
from tracker_watch.swarm.planner import PiecePlanner
from tracker_watch.swarm.settings import (
    apply_zero_upload_peer_classes,
    lowered_settings,
    new_session,
    session_settings,
)
from tracker_watch.swarm.swarm import PRIORITY_WANTED, Swarm, SwarmSpec
from tracker_watch.swarm.verifier import Verifier

_log = log.get("tracker_watch.swarm")

STAT_NAMES = ("net.sent_payload_bytes", "net.recv_payload_bytes", "dht.dht_nodes", "peer.num_peers_connected",
              "net.sent_bytes", "net.recv_bytes")
MetadataCallback = Callable[[Swarm, bytes, TorrentMeta], None]
BrokenCallback = Callable[[str, str], None]  # (swarm key, reason): this swarm cannot be watched


def resolve_payload_dir(settings: Settings) -> Path:
    """Pieces under verification belong on a tmpfs: they must never reach a disk."""
    if settings.swarm.payload_dir:
        base = Path(settings.swarm.payload_dir)
    elif rd := os.environ.get("RUNTIME_DIRECTORY"):
        base = Path(rd.split(":")[0])
    elif Path("/dev/shm").is_dir() and os.access("/dev/shm", os.W_OK):
        base = Path("/dev/shm")
    else:
        base = settings.node.state_dir / "payload"
    return base / f"tracker-watch-payload-{settings.node.name}"


class SwarmEngine:
    def __init__(self, settings: Settings, sink: Callable[[PeerEvent], None],
                 on_metadata: MetadataCallback | None = None,
                 planner_factory: Callable[[int, Callable[[int], int]], PiecePlanner] | None = None) -> None:
        self.settings = settings
        self.sink = sink
        self.on_metadata = on_metadata
        self.on_broken: BrokenCallback | None = None
        v = settings.verify
        self.planner_factory = planner_factory or (lambda n, size: PiecePlanner(
            n, size, pieces_per_peer=v.pieces_per_peer, bytes_per_ip_per_day=v.bytes_per_peer_per_day,
            bytes_per_swarm_per_day=v.bytes_per_swarm_per_day, max_wanted=v.max_wanted_pieces,
            max_attempts=v.max_attempts_per_peer, redial_s=v.redial_s))
        self.payload_dir = resolve_payload_dir(settings)
        self.session: Any = None
        self.swarms: dict[str, Swarm] = {}
        self._by_handle: dict[Any, Swarm] = {}
        self.discovery = Discovery(settings.swarm, lambda: self.session, lambda: self.swarms)  # DHT, hints, PEX
        self.listen_endpoints: set[Endpoint] = set()
        sw = settings.swarm
        self.policy = AddressPolicy.from_settings(sw.allowed_networks, sw.denied_networks)
        self.own_ips: set[str] = own_addresses(settings)  # the session's and the verifier's; grows as listens succeed
        self.counters: dict[str, int] = {}
        self.alerts_dropped = 0
        self.upload_tripwire = 0
        self.recycled = 0
        self._listen_port = 0
        self._pump: AlertPump | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reads = PeerReads()  # the swarms' timer-driven peer reads, off the loop
        self.peer_id = b"-TW0100-" + os.urandom(6).hex().encode()
        self.filter = SessionFilter(lambda: self.session, self.policy, self.own_ips, lambda: self.swarms.values())
        self.verifier: Verifier | None = None
        if v.method == "probe":  # each candidate is proven over a connection of its own (swarm/verifier.py)
            # the probe address first; the session's own addresses for a family it does not cover
            local = ([v.probe_interface] if v.probe_interface else []) + list(sw.outgoing_interfaces)
            self.verifier = Verifier(v, sink, local, client_name=SOFTWARE, own=self.listen_endpoints,
                                     session_ips=set(sw.outgoing_interfaces), hold=self.filter.hold,
                                     release=self.filter.release)

    # --- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        tune_collector()  # a node's allocation rate: see swarm/heap.py
        shutil.rmtree(self.payload_dir, ignore_errors=True)  # leftovers of a crash: never keep payload
        self.payload_dir.mkdir(parents=True, mode=0o700)
        pack = session_settings(self.settings.swarm, user_agent=f"{SOFTWARE} libtorrent/{lt.__version__}")
        self.session = new_session(pack)
        for name, (asked, held) in lowered_settings(pack, self.session).items():
            _log.warning("libtorrent_setting_lowered", setting=name, asked=asked, held=held)
        apply_zero_upload_peer_classes(self.session)
        self.filter.apply()
        self._pump = AlertPump(self.session, self._on_alerts)
        self._pump.start(self._loop)
        self._tasks = [asyncio.create_task(self._stats_loop(), name="swarm-stats")]
        if self.verifier is not None:
            self.verifier.allows = lambda ip: self.policy.allows(ip, self.own_ips)
            hosts = [ip for ip in self.verifier.local_ips.values() if ip]
            port = await self.verifier.listen(hosts, self.settings.verify.listen_port)
            # the verifier's listener is us too: trackers list it back to us (and peers may name it by PEX);
            # dialling it would spend a probe slot and a listener slot on a conversation with ourselves
            self.listen_endpoints.update((normalize_ip(h), port) for h in hosts)
            self.own_ips.update(normalize_ip(h) for h in hosts)  # on any other port as well
            self.filter.apply()
            self._tasks.append(asyncio.create_task(self.verifier.run(), name="swarm-verifier"))
        if self.settings.swarm.dht_enabled:
            self._tasks.append(asyncio.create_task(self.discovery.run(), name="swarm-dht"))
        _log.info("swarm_engine_started", listen=self.settings.swarm.listen_interfaces,
                  dht=self.settings.swarm.dht_enabled, payload_dir=str(self.payload_dir))

    async def stop(self) -> None:
        if self.verifier is not None:
            await self.verifier.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        # all at once: the maps and the session go with them (unwatch() samples and unindexes each swarm)
        swarms, self.swarms = self.swarms, {}
        self._by_handle.clear()
        self.discovery.clear()
        for swarm in swarms.values():
            swarm.close()
        await self._reads.close()  # no peer read still asks the session once it is torn down
        for swarm in swarms.values():
            if self.session is not None:
                self.session.remove_torrent(swarm.handle, lt.session.delete_files | lt.session.delete_partfile)
        if self._pump is not None:
            self._pump.stop()
        if self.session is not None:
            session, self.session = self.session, None
            self._listen_port = 0
            # the destructor joins libtorrent's threads and may wait for trackers; keep the loop free
            await asyncio.to_thread(_destroy, session)
        if self._pump is not None:
            self._pump.close()
            self._pump = None
        shutil.rmtree(self.payload_dir, ignore_errors=True)
        _log.info("swarm_engine_stopped")

    # --- swarms ----------------------------------------------------------------------------------
    def watch(self, spec: SwarmSpec) -> Swarm:
        if spec.key in self.swarms:
            return self.swarms[spec.key]
        assert self._loop is not None
        # in probe mode libtorrent downloads nothing: it finds peers and fetches metadata, the verifier proves
        handle = self._add(spec, spec.info, generation=0, want_first_piece=self.verifier is None)
        swarm = Swarm(spec, handle, self.sink, self.planner_factory, self.settings.swarm.peer_refresh_s, self._loop,
                      recycle=self._recycle, own_endpoints=self.listen_endpoints,
                      max_peers=self.settings.swarm.max_peers_per_swarm, policy=self.policy, own_ips=self.own_ips,
                      candidate=self.verifier.offer if self.verifier is not None else None, reads=self._reads)
        self.swarms[spec.key] = swarm
        self._by_handle[handle] = swarm
        if self.verifier is not None:
            self.verifier.expect(spec.key, spec.infohash_v1)
        if spec.info is not None:
            swarm.on_metadata(meta_from_info(spec.info), spec.info)
            if self.verifier is not None:
                self.verifier.attach(swarm)
        self.discovery.started(swarm, self.add_peer)
        _log.info("swarm_added", infohash=spec.key, metadata=spec.info is not None, peer_hints=len(spec.peers))
        return swarm

    def _add(self, spec: SwarmSpec, info: bytes | None, generation: int, want_first_piece: bool) -> Any:
        assert self.session is not None
        params = _add_params(spec, info)
        # a fresh directory per generation: deleting the previous one's files can never race with this one
        params.save_path = str(self.payload_dir / spec.key / str(generation))
        flags = params.flags | lt.torrent_flags.default_dont_download | self.discovery.torrent_flags()
        params.flags = flags & ~(lt.torrent_flags.auto_managed | lt.torrent_flags.paused)
        params.max_connections = self.settings.swarm.max_peers_per_swarm
        if want_first_piece:
            params.piece_priorities = [PRIORITY_WANTED]  # piece 0 (INITIAL_PIECE); applied once metadata is known
        return self.session.add_torrent(params)

    def _recycle(self, swarm: Swarm) -> None:
        """Delete the payload of a swarm that wants nothing more (every piece it held is verified): remove the
        torrent with its files and add it again, empty, from the metadata we keep."""
        if self.session is None or swarm.closed or swarm.info is None:
            return
        # every handshake completed so far gets its row: removing the torrent drops its connections, and
        # their disconnect alerts would name a handle we no longer know (2 of 20 short runs lost a contact)
        swarm.sample_now()
        self._by_handle.pop(swarm.handle, None)
        self.session.remove_torrent(swarm.handle, lt.session.delete_files | lt.session.delete_partfile)
        handle = self._add(swarm.spec, swarm.info, generation=swarm.generation + 1, want_first_piece=False)
        swarm.replaced(handle)
        self._by_handle[handle] = swarm
        self.recycled += 1
        metrics.PAYLOAD_DELETED.inc()
        _log.info("payload_deleted", infohash=swarm.key, generation=swarm.generation)

    def unwatch(self, key: str) -> None:
        swarm = self.swarms.pop(key, None)
        if swarm is None:
            return
        if self.session is not None and not swarm.closed:
            swarm.sample_last()  # as before a recycle: no completed handshake goes without its row
        swarm.close()
        if self.verifier is not None:
            self.verifier.detach(key)
        self._by_handle.pop(swarm.handle, None)
        self.discovery.forget(swarm)
        if self.session is not None:
            self.session.remove_torrent(swarm.handle, lt.session.delete_files | lt.session.delete_partfile)
        _log.info("swarm_removed", infohash=key)

    def add_peer(self, key: str, peer: Endpoint, source: Source, tracker_url: str | None = None) -> None:
        swarm = self.swarms.get(key)
        if swarm is None or peer in self.listen_endpoints:
            return
        swarm.add_peer(peer, source, tracker_url)

    def announce_port(self) -> int:
        """The port trackers are told: the verifier's listener in probe mode, else the session's."""
        if self.verifier is not None and self.verifier.listen_port:
            return self.verifier.listen_port
        return self.listen_port()

    def listen_port(self) -> int:
        # a synchronous round trip to libtorrent's network thread, and every announce asks: ask once (with
        # 5,000 swarms on a busy machine these waits held the event loop for seconds; bench/capacity_load.py)
        if not self._listen_port and self.session is not None:
            self._listen_port = int(self.session.listen_port())
        return self._listen_port

    def uploaded_payload_bytes(self) -> int:
        """Payload bytes this session sent, now: the number that must stay zero."""
        live = sum(int(s.handle.status().total_payload_upload) for s in self.swarms.values())
        return max(live, self.counters.get("net.sent_payload_bytes", 0))

    # --- alerts ----------------------------------------------------------------------------------
    def _on_alerts(self, alerts: list[Any]) -> None:
        for a in alerts:
            handler = _HANDLERS.get(type(a).__name__)
            if handler is None:
                continue
            try:
                handler(self, a)
            except Exception as exc:  # one alert's trouble must never lose the rest of the batch
                metrics.ALERT_HANDLER_ERRORS.inc()
                _log.exception("alert_handler_failed", alert=type(a).__name__, error=str(exc)[:300])

    def _swarm_of(self, alert: Any) -> Swarm | None:
        return self._by_handle.get(alert.handle)

    def _peer_connect(self, a: Any) -> None:
        if s := self._swarm_of(a):
            s.on_peer_connect(a)

    def _peer_disconnected(self, a: Any) -> None:
        if s := self._swarm_of(a):
            s.on_peer_disconnected(a)

    def _metadata_received(self, a: Any) -> None:
        swarm = self._swarm_of(a)
        if swarm is None:
            return
        ti = swarm.handle.torrent_file()
        info = bytes(ti.info_section())
        try:
            meta = meta_from_info(info)
        except TargetParseError as exc:  # libtorrent took it, but it is beyond our limits
            _log.error("metadata_refused", infohash=swarm.key, error=str(exc))
            if self.on_broken is not None:
                self.on_broken(swarm.key, str(exc))
            return
        hashes = swarm.handle.info_hashes()
        v1 = bytes(hashes.v1.to_bytes()) if hashes.has_v1() else None
        v2 = bytes(hashes.v2.to_bytes()) if hashes.has_v2() else None
        self.discovery.index(swarm, v1, v2)
        swarm.on_metadata(meta, info, ti, hashes)  # asked once: every ask stops the loop until libtorrent answers
        if self.verifier is not None:
            self.verifier.attach(swarm)
        _log.info("metadata_received", infohash=swarm.key, name=meta.name, pieces=meta.num_pieces)
        if self.on_metadata is not None:
            self.on_metadata(swarm, info, meta)

    def _block_finished(self, a: Any) -> None:
        if s := self._swarm_of(a):
            s.on_block_finished(a)

    def _piece_finished(self, a: Any) -> None:
        if s := self._swarm_of(a):
            s.on_piece_finished(int(a.piece_index))

    def _hash_failed(self, a: Any) -> None:
        if s := self._swarm_of(a):
            s.on_hash_failed(int(a.piece_index))

    def _read_piece(self, a: Any) -> None:
        if s := self._swarm_of(a):
            s.on_read_piece(a)

    def _peer_ban(self, a: Any) -> None:
        if s := self._swarm_of(a):
            s.on_peer_ban(a)

    def _block_uploaded(self, a: Any) -> None:
        # Must never happen (zero-upload settings). Fail closed: stop the torrent and shout.
        self.upload_tripwire += 1
        swarm = self._swarm_of(a)
        _log.critical("payload_uploaded", infohash=swarm.key if swarm else None, peer=str(a.endpoint))
        a.handle.pause()

    def _dht_reply(self, a: Any) -> None:
        self.discovery.on_reply(a)

    def _listen_succeeded(self, a: Any) -> None:
        ip = normalize_ip(str(a.address))
        self.listen_endpoints.add((ip, int(a.port)))
        if ip not in self.own_ips:
            self.own_ips.add(ip)
            self.filter.apply()

    def _alerts_dropped(self, a: Any) -> None:
        self.alerts_dropped += 1
        _log.warning("alerts_dropped")

    def _session_stats(self, a: Any) -> None:
        values = a.values  # the bindings give {metric name: value}
        self.counters = {name: int(values.get(name, 0)) for name in STAT_NAMES}

    def _torrent_error(self, a: Any) -> None:
        swarm = self._swarm_of(a)
        _log.error("torrent_error", infohash=swarm.key if swarm else None, error=a.message())

    # --- periodic work ---------------------------------------------------------------------------
    async def _stats_loop(self) -> None:
        while True:
            if self.session is not None:
                self.session.post_session_stats()
            await asyncio.sleep(5.0)


def _destroy(session: Any) -> None:
    session.pause()
    del session


def _add_params(spec: SwarmSpec, info: bytes | None) -> Any:
    if info is not None:
        params = lt.add_torrent_params()
        params.ti = lt.torrent_info(b"d4:info" + info + b"e")
        return params
    parts = []
    if spec.infohash_v1:
        parts.append("xt=urn:btih:" + spec.infohash_v1.hex())
    if spec.infohash_v2:
        parts.append("xt=urn:btmh:1220" + spec.infohash_v2.hex())
    return lt.parse_magnet_uri("magnet:?" + "&".join(parts))


_HANDLERS: dict[str, Callable[[SwarmEngine, Any], None]] = {
    "peer_connect_alert": SwarmEngine._peer_connect,
    "peer_disconnected_alert": SwarmEngine._peer_disconnected,
    "metadata_received_alert": SwarmEngine._metadata_received,
    "block_finished_alert": SwarmEngine._block_finished,
    "piece_finished_alert": SwarmEngine._piece_finished,
    "hash_failed_alert": SwarmEngine._hash_failed,
    "read_piece_alert": SwarmEngine._read_piece,
    "peer_ban_alert": SwarmEngine._peer_ban,
    "block_uploaded_alert": SwarmEngine._block_uploaded,
    "dht_get_peers_reply_alert": SwarmEngine._dht_reply,
    "listen_succeeded_alert": SwarmEngine._listen_succeeded,
    "alerts_dropped_alert": SwarmEngine._alerts_dropped,
    "session_stats_alert": SwarmEngine._session_stats,
    "torrent_error_alert": SwarmEngine._torrent_error,
}
