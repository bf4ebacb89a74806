"""Our own tracker client (HTTP and UDP): every peer a tracker lists is recorded with the tracker's URL.

libtorrent's built-in announces only report a peer count, so we announce ourselves and hand the peers
to the engine, which records them as `listed` and dials them. One task per (swarm, tracker, infohash):
a hybrid torrent is announced under its v1 hash and its truncated v2 hash, as clients do.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import socket
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiohttp

from tracker_watch import SOFTWARE, log, metrics
from tracker_watch.config import Settings, TrackerSettings
from tracker_watch.domain import tracker_proto as tp
from tracker_watch.domain.addresses import STRICT, AddressPolicy
from tracker_watch.domain.evidence import Source, normalize_ip
from tracker_watch.domain.peers import Endpoint
from tracker_watch.domain.peerwire import new_peer_id
from tracker_watch.domain.trackers import MAX_TRACKERS, TrackerUrlError, clean_tracker_url, redact
from tracker_watch.swarm.goodbyes import STOP_DEADLINE_S, Goodbye, Goodbyes
from tracker_watch.swarm.pacing import Pacer
from tracker_watch.swarm.tracker_http import PolicyResolver, check_literal_host, get_reply
from tracker_watch.swarm.tracker_udp import udp_announce

if TYPE_CHECKING:
    from tracker_watch.swarm.engine import SwarmEngine

_log = log.get("tracker_watch.swarm")
UNKNOWN_LEFT = 2**34  # a leecher that wants everything: some trackers only list seeds to leechers
PEERS_PER_SLICE = 200  # peers handed to the engine between two yields to the event loop (or fewer: pacing.py)
# First announces of newly tracked swarms leave at most this fast (per identity): 10,000 targets registered at
# once started 20,000 requests within a few turns of the loop (~0.4 ms of aiohttp set-up each, then their
# replies in a burst). A single new target still announces at once; 1,000 at once take 2 s.
FIRST_ANNOUNCES_PER_S = 500.0
# Announces in flight at once (per identity), as many as the HTTP client's connections. An announce waits for
# its turn *before* its deadline starts: queued behind a slow tracker's replies, it used to time out without
# ever being sent, count as the tracker's failure and back off 60, 120, 240 s… (tests/swarm/test_announcer_queue.py).
IN_FLIGHT = 100
Announced = tuple[str, bytes]  # (tracker URL, infohash)


@dataclass(frozen=True)
class AnnounceTarget:
    key: str
    info_hashes: tuple[bytes, ...]  # 20-byte hashes to announce under
    trackers: tuple[str, ...]


class Announcer:
    def __init__(self, settings: TrackerSettings, add_peer: Callable[[str, Endpoint, Source, str], None],
                 listen_port: Callable[[], int], peer_id: bytes, local_ip: str | None = None,
                 policy: AddressPolicy = STRICT, own_ips: Callable[[], set[str]] = set,
                 local_ips: Sequence[str] = ()) -> None:
        self.settings = settings
        self.policy = policy  # which tracker hosts we contact and which listed peers we pass on
        self._own_ips = own_ips  # our own addresses: never a tracker, never a peer
        self._add_peer = add_peer
        self._listen_port = listen_port
        self._peer_id = peer_id
        # our address per family: an announce leaves from the one of the tracker's family (dual stack)
        addrs = [*([local_ip] if local_ip else []), *local_ips]
        self._local = {4: next((a for a in addrs if ":" not in a), None), 6: next((a for a in addrs if ":" in a), None)}
        self._key = random.getrandbits(32)
        self._tasks: dict[str, dict[Announced, asyncio.Task[None]]] = {}
        # the port a "started" announce told each (tracker, infohash) of a swarm: its event=stopped says goodbye
        # with it (peer id and key are this identity's); a port, not the request: 10,000 swarms keep these
        self._started: dict[str, dict[Announced, int]] = {}
        self._next_first = 0.0  # loop time from which the next first announce may leave
        self._http: dict[int, aiohttp.ClientSession] = {}
        self._turns = asyncio.Semaphore(IN_FLIGHT)
        self.goodbyes = Goodbyes(self.announce, self._turns, settings.timeout_s, IN_FLIGHT, self._tracked_again)
        self.stop_deadline_s = STOP_DEADLINE_S
        self.announces = 0
        self.failures = 0

    async def start(self) -> None:
        for family, local in self._local.items():  # one client per family, bound to our address of it
            connector = aiohttp.TCPConnector(local_addr=(local, 0) if local else None, limit=IN_FLIGHT,
                                             family=socket.AF_INET6 if family == 6 else socket.AF_INET,
                                             resolver=PolicyResolver(self.allows))
            self._http[family] = aiohttp.ClientSession(
                connector=connector, headers={"User-Agent": SOFTWARE},
                # a connection not made in half the deadline fails as such (ConnectionTimeoutError): nothing was
                # sent, whereas a request that timed out later may have reached the tracker
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout_s, sock_connect=self.settings.timeout_s / 2))

    async def stop(self) -> None:
        for key in list(self._tasks):
            self.untrack(key)
        await self.goodbyes.close(self.stop_deadline_s)
        for http in self._http.values():
            await http.close()
        self._http = {}

    def track(self, target: AnnounceTarget) -> None:
        key = target.key
        self._cancel(key)
        started = self._started.pop(key, {})
        pairs: list[Announced] = []
        if self.settings.enabled:
            urls = self._usable(key, target.trackers) + tuple(self.settings.extra)
            pairs = [(url, ih) for url in dict.fromkeys(urls) for ih in target.info_hashes]
        # trackers the target no longer names get their goodbye; the others are still announced to
        self._say_goodbye(key, {p: r for p, r in started.items() if p not in pairs})
        if kept := {p: r for p, r in started.items() if p in pairs}:
            self._started[key] = kept
        if pairs:
            self._tasks[key] = {(url, ih): asyncio.create_task(self._loop(key, url, ih, self._first_delay()),
                                                               name=f"announce-{key[:8]}") for url, ih in pairs}

    def _first_delay(self) -> float:
        """Seconds until this first announce may leave: spaced 1/FIRST_ANNOUNCES_PER_S after the previous one."""
        now = asyncio.get_running_loop().time()
        at = max(now, self._next_first)
        self._next_first = at + 1.0 / FIRST_ANNOUNCES_PER_S
        return at - now

    def allows(self, ip: str) -> bool:
        return self.policy.allows(ip, self._own_ips())

    def _usable(self, key: str, trackers: tuple[str, ...]) -> tuple[str, ...]:
        """The target's trackers we may announce to: valid, credentials removed, no forbidden literal host,
        at most MAX_TRACKERS. Stored rows predate these checks, so they are made here too."""
        out: dict[str, None] = {}
        for url in dict.fromkeys(trackers):
            try:
                clean = clean_tracker_url(url)
                check_literal_host(clean, self.allows)
            except (TrackerUrlError, tp.TrackerError) as exc:
                metrics.TRACKERS_REFUSED.inc()
                _log.warning("tracker_refused", infohash=key, error=str(exc))
                continue
            if len(out) >= MAX_TRACKERS:
                metrics.TRACKERS_REFUSED.inc()
                _log.warning("tracker_refused", infohash=key, tracker=redact(clean),
                             error=f"more than {MAX_TRACKERS} trackers")
                continue
            out[clean] = None
        return tuple(out)

    def untrack(self, key: str) -> None:
        self._cancel(key)
        self._say_goodbye(key, self._started.pop(key, {}))

    def _cancel(self, key: str) -> None:
        for task in self._tasks.pop(key, {}).values():
            task.cancel()

    def _say_goodbye(self, key: str, started: dict[Announced, int]) -> None:
        """An event=stopped announce (BEP 3) where a started one went out: else the tracker lists us, a dead
        address, to every peer of the swarm (and to the node that takes it over) for its peer lifetime."""
        if started:
            self.goodbyes.add([Goodbye(key, url, tp.AnnounceRequest(
                info_hash=ih, peer_id=self._peer_id, port=port, left=UNKNOWN_LEFT, numwant=0, key=self._key,
                event="stopped")) for (url, ih), port in started.items()])

    def _tracked_again(self, g: Goodbye) -> bool:
        """Tracked again since its goodbye was queued (a lease regained): no goodbye now, but one when it goes."""
        pair = (g.url, g.request.info_hash)
        if pair not in self._tasks.get(g.key, {}):
            return False
        self._started.setdefault(g.key, {}).setdefault(pair, g.request.port)
        return True

    async def _loop(self, key: str, url: str, info_hash: bytes, first_delay: float = 0.0) -> None:
        event, failures = "started", 0
        s = self.settings
        if first_delay > 0:
            await asyncio.sleep(first_delay)
        while True:
            if event == "started":  # after our goodbye to this tracker, if one is still on its way
                await self.goodbyes.settled(key, url, info_hash)
            req = tp.AnnounceRequest(info_hash=info_hash, peer_id=self._peer_id, port=self._listen_port(),
                                     left=UNKNOWN_LEFT, numwant=s.numwant, key=self._key, event=event)
            try:
                async with self._turns, asyncio.timeout(s.timeout_s * 2):  # not wait_for: see evidence/batcher.py
                    if event == "started":  # from now on the tracker may list us (cancelled in flight too)
                        self._started.setdefault(key, {})[(url, info_hash)] = req.port
                    reply = await self.announce(url, req)
            except (tp.TrackerError, OSError, TimeoutError, aiohttp.ClientError, ValueError) as exc:
                if event == "started" and not _may_have_arrived(exc):  # never listed us: nothing to take back
                    self._started.get(key, {}).pop((url, info_hash), None)
                metrics.ANNOUNCES.labels(event=event or "regular", result="failed").inc()
                failures += 1
                self.failures += 1
                delay = min(s.max_interval_s, s.min_interval_s * 2 ** min(failures - 1, 10))
                error = (str(exc) or type(exc).__name__).replace(url, redact(url))
                _log.info("announce_failed", infohash=key, tracker=redact(url), error=error[:200], retry_in_s=delay)
            else:
                metrics.ANNOUNCES.labels(event=event or "regular", result="ok").inc()
                failures, event = 0, ""
                self.announces += 1
                await self._deliver(key, url, reply)
                wanted = reply.min_interval or reply.interval
                delay = min(max(wanted, s.min_interval_s), s.max_interval_s)
            await asyncio.sleep(delay * random.uniform(0.9, 1.0))

    async def _deliver(self, key: str, url: str, reply: tp.AnnounceReply) -> None:
        """Hand the listed peers the policy allows to the engine, in slices that let the loop breathe."""
        refused = 0
        pace = Pacer(PEERS_PER_SLICE)  # a hand-over calls into libtorrent: slow while its network thread is busy
        for ip, port in reply.peers:
            await pace.step()
            peer = (normalize_ip(ip), port)
            if not self.allows(peer[0]):
                refused += 1
                continue
            self._add_peer(key, peer, Source.TRACKER, url)
        if refused:
            metrics.PEERS_REFUSED.labels(source=Source.TRACKER.value).inc(refused)
        if refused or reply.omitted:  # a tracker listing internal addresses or flooding us is worth a line
            _log.info("tracker_peers_refused", infohash=key, tracker=redact(url), refused=refused,
                      omitted=reply.omitted, listed=len(reply.peers) + reply.omitted)
        _log.debug("announced", infohash=key, tracker=redact(url), peers=len(reply.peers) - refused)

    async def announce(self, url: str, req: tp.AnnounceRequest) -> tp.AnnounceReply:
        scheme = urllib.parse.urlsplit(url).scheme
        if scheme in ("http", "https"):
            return await self._announce_http(url, req)
        if scheme == "udp":
            return await self._announce_udp(url, req)
        raise tp.TrackerError(f"unsupported tracker scheme {scheme!r}")

    async def _announce_http(self, url: str, req: tp.AnnounceRequest) -> tp.AnnounceReply:
        assert self._http
        body = await get_reply(self._http[self._family(url)], tp.http_announce_url(url, req), self.allows)
        if len(body) > 64 * 1024:  # a big list: decode it off the loop (bencode is pure Python)
            return await asyncio.to_thread(tp.parse_http_reply, body, self.settings.numwant)
        return tp.parse_http_reply(body, self.settings.numwant)

    def _family(self, url: str) -> int:
        """6 for a tracker at an IPv6 literal, or a host name when we have only an IPv6 address; else 4."""
        host = urllib.parse.urlsplit(url).hostname or ""
        try:
            return ipaddress.ip_address(host).version
        except ValueError:
            return 6 if self._local[4] is None and self._local[6] is not None else 4

    async def _announce_udp(self, url: str, req: tp.AnnounceRequest) -> tp.AnnounceReply:
        return await udp_announce(url, req, self.allows, self._local, self.settings.timeout_s, self.settings.numwant)


def _may_have_arrived(exc: BaseException) -> bool:
    """An announce that failed this way may still have reached the tracker (and listed us): it timed out after
    it was sent. Refusals, unreachable hosts and connections never made did not."""
    return isinstance(exc, TimeoutError) and not isinstance(exc, aiohttp.ConnectionTimeoutError)


class Announcers:
    """Several identities announced for the same swarms: the session's address and port (it fetches
    metadata and takes part in PEX) and the verifier's listener (a peer that dials it is proven on that
    connection). Each has its own peer id and address; the watchlist tracks targets in all of them."""

    def __init__(self, *announcers: Announcer) -> None:
        self.members = announcers

    async def start(self) -> None:
        for a in self.members:
            await a.start()

    async def stop(self) -> None:
        # together: each member's event=stopped announces share one deadline rather than adding theirs up
        await asyncio.gather(*(a.stop() for a in self.members))

    def track(self, target: AnnounceTarget) -> None:
        for a in self.members:
            a.track(target)

    def untrack(self, key: str) -> None:
        for a in self.members:
            a.untrack(key)


def announcers_for(s: Settings, engine: SwarmEngine) -> Announcers:
    """The session's identity, and the verifier's listener from its own address (a peer that dials it is
    proven on that connection) when verification runs."""
    session = Announcer(s.trackers, engine.add_peer, engine.listen_port, engine.peer_id, None, policy=engine.policy,
                        own_ips=lambda: engine.own_ips, local_ips=s.swarm.outgoing_interfaces)
    members = [session]
    if engine.verifier is not None:
        probe = [s.verify.probe_interface] if s.verify.probe_interface else []
        members.append(Announcer(s.trackers, engine.add_peer, engine.announce_port, new_peer_id(), None,
                                 policy=engine.policy, own_ips=lambda: engine.own_ips,
                                 local_ips=[*probe, *s.swarm.outgoing_interfaces]))
    for a in members:  # goodbyes take a small share of the daemon's stop: the rest must still be written
        a.stop_deadline_s = min(STOP_DEADLINE_S, s.daemon.shutdown_grace_s / 4)
    return Announcers(*members)
