"""Lanes: a libtorrent session of its own for one candidate peer, the fallback where our wire client cannot go.

The wire client (swarm/wire) speaks TCP and checks v1 SHA-1 pieces. A uTP-only peer, or a pure v2 torrent
(SHA-256 merkle trees), is proven here instead: a throw-away libtorrent session ("lane") that

- binds to the verifier's own address (never the main session's: clients take one connection per address),
  listens on an ephemeral port that is announced nowhere, and lets no address but the candidate's in or out
  (IP filter), with no DHT, LSD, UPnP, NAT-PMP, trackers, or extensions at all (no ut_pex: nobody else joins);
- dials only the candidate, wants exactly one piece (all others priority 0), and uploads nothing (the main
  session's zero-upload settings and peer classes, swarm/settings.py);
- keeps the payload in a private temporary directory deleted with the lane.

Whatever passes libtorrent's hash check there (SHA-1 for v1, the merkle proof against the info dict's
pieces root for v2) came from the only peer that ever connected: exact attribution. The result is a
ProbeResult, so the verifier records it exactly like a probe.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import shutil
import tempfile
from datetime import UTC, datetime
from typing import Any

import libtorrent as lt

from tracker_watch.domain.evidence import normalize_ip
from tracker_watch.swarm.settings import ZERO_UPLOAD, apply_zero_upload_peer_classes
from tracker_watch.swarm.wire import ProbeResult, Reason

CONNECT_S = 15.0  # no handshake with the candidate by then: it is not there (uTP and TCP both tried)
GONE_S = 3.0      # no connection nor attempt to the candidate for this long: it hung up, or is not there
POLL_S = 0.05
# peer_info::utp_socket (1 << 17): not exported by the 2.1 bindings; it is the bit after i2p_socket (1 << 16)
UTP_SOCKET = int(lt.peer_info.i2p_socket) << 1
# a TCP probe that ended so may have met a uTP-only peer (libtorrent accepts TCP, then drops it)
LANE_AFTER = frozenset({Reason.REFUSED, Reason.UNREACHABLE, Reason.HANDSHAKE_REFUSED})
_MASK = (lt.alert_category.error | lt.alert_category.status | lt.alert_category.peer | lt.alert_category.connect
         | lt.alert_category.piece_progress | lt.alert_category.storage | lt.alert_category.upload)


def lane_settings(local_ip: str) -> dict[str, Any]:
    host = f"[{local_ip}]" if ":" in local_ip else local_ip
    pack: dict[str, Any] = {
        "listen_interfaces": f"{host}:0",  # uTP dials out from the listen socket; the port is told to no one
        "outgoing_interfaces": local_ip,
        "enable_dht": False, "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
        "alert_mask": int(_MASK),
        "close_redundant_connections": False,
        "connections_limit": 4,
        "whole_pieces_threshold": 600,
        "strict_end_game_mode": True,
        "user_agent": "tracker-watch",
    }
    pack.update(ZERO_UPLOAD)
    return pack


def piece_count(info: bytes) -> tuple[int, int]:
    """(pieces, largest piece size) of an info dictionary."""
    ti = lt.torrent_info(b"d4:info" + info + b"e")
    return int(ti.num_pieces()), int(ti.piece_length())


async def lane_probe(ip: str, port: int, info: bytes, piece: int | None = None, *, local_ip: str,
                     timeout: float = 120.0) -> ProbeResult:
    """Fetch one piece from ip:port alone in a lane; verified only if libtorrent passed it and no other
    address ever connected. `piece` None: a random one (switched to one the peer has if it lacks it)."""
    lane = _Lane(ip, port, info, local_ip)
    try:
        return await lane.run(piece, timeout)
    finally:
        await asyncio.to_thread(lane.close)


class _Lane:
    def __init__(self, ip: str, port: int, info: bytes, local_ip: str) -> None:
        self.ip, self.port, self.local_ip = normalize_ip(ip), port, local_ip
        self.ti = lt.torrent_info(b"d4:info" + info + b"e")
        self.dir = tempfile.mkdtemp(prefix="tw-lane-")
        self.session: Any = None
        self.handle: Any = None
        self.seen: set[str] = set()       # every address libtorrent reported a connection with
        self.uploaded_blocks = 0          # block_uploaded_alert: must stay 0
        self.transport = ""

    def _start(self, piece: int) -> None:
        self.session = lt.session(lane_settings(self.local_ip), 0)  # type: ignore[call-overload]  # no plugins
        apply_zero_upload_peer_classes(self.session)
        ipf = lt.ip_filter()
        ipf.add_rule("0.0.0.0", "255.255.255.255", 1)
        ipf.add_rule("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 1)
        ipf.add_rule(self.ip, self.ip, 0)  # the candidate is the only address we talk to, either way
        self.session.set_ip_filter(ipf)
        params = lt.add_torrent_params()
        params.ti = self.ti
        params.save_path = self.dir
        params.flags &= ~(lt.torrent_flags.auto_managed | lt.torrent_flags.paused)
        params.flags |= lt.torrent_flags.disable_pex | lt.torrent_flags.disable_dht | lt.torrent_flags.disable_lsd
        prios = [0] * int(self.ti.num_pieces())
        prios[piece] = 7
        params.piece_priorities = prios
        self.handle = self.session.add_torrent(params)

    async def run(self, piece: int | None, timeout: float) -> ProbeResult:
        n = int(self.ti.num_pieces())
        piece = random.randrange(n) if piece is None else piece
        started = datetime.now(UTC)
        hashes = self.ti.info_hashes()
        info_hash = bytes((hashes.v1 if hashes.has_v1() else hashes.v2).to_bytes())[:20]
        r = ProbeResult(ip=self.ip, port=self.port, info_hash=info_hash, piece_index=piece, started_at=started,
                        attempts=["lane"])
        await asyncio.to_thread(self._start, piece)
        self.handle.connect_peer((self.ip, self.port))
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        quiet_since = t0  # since when libtorrent has held no connection (or attempt) to the candidate at all
        try:
            async with asyncio.timeout(timeout):
                while r.verified is None:
                    await asyncio.sleep(POLL_S)
                    self._alerts(r)
                    every = self.handle.get_peer_info()
                    peers = [p for p in every if not p.flags & (lt.peer_info.handshake | lt.peer_info.connecting)]
                    for p in peers:  # sampled before a verdict too: the row needs its peer id and client
                        self.seen.add(normalize_ip(str(p.ip[0])))
                        self._sample(r, p, loop.time() - t0)
                        self._switch(r, p, n)
                    now = loop.time()
                    if every:
                        quiet_since = now
                    never = not r.connected and now - t0 > CONNECT_S
                    if r.verified is None and (now - quiet_since > GONE_S or never):
                        r.reason = Reason.CLOSED if r.connected else Reason.UNREACHABLE
                        r.detail = "the peer hung up in the lane" if r.connected else "no connection (uTP or TCP)"
                        break
        except TimeoutError:
            r.reason, r.detail = Reason.TIMEOUT, f"lane ran {timeout:.0f} s without a verdict"
        self._settle(r)
        if r.verified is True:
            r.sha256 = await self._sha256(r.piece_index)
        r.finished_at = datetime.now(UTC)
        return r

    def _switch(self, r: ProbeResult, p: Any, n: int) -> None:
        """A partial seeder lacking the piece: ask for one it has instead (once)."""
        if "switched" in r.attempts or len(p.pieces) != n or p.pieces[r.piece_index]:
            return
        has = [i for i, b in enumerate(p.pieces) if b]
        if has:
            r.attempts.append("switched")
            r.piece_index = random.choice(has)
            prios = [0] * n
            prios[r.piece_index] = 7
            self.handle.prioritize_pieces(prios)

    def _sample(self, r: ProbeResult, p: Any, elapsed: float) -> None:
        r.connected = r.handshake_ok = True
        r.timeline.setdefault("handshake", round(elapsed, 3))
        pid = bytes(p.pid.to_bytes())
        r.peer_id = pid if any(pid) else r.peer_id
        r.client = str(p.client) or r.client
        local = p.local_endpoint()
        r.local = (normalize_ip(str(local[0])), int(local[1]))
        r.pieces_advertised = sum(1 for b in p.pieces if b)
        r.has_piece = bool(p.pieces[r.piece_index]) if len(p.pieces) > r.piece_index else None
        r.encrypted = bool(p.flags & lt.peer_info.rc4_encrypted)
        r.bytes_received, r.bytes_sent = int(p.total_download), int(p.total_upload)  # payload, by libtorrent
        self.transport = "utp" if int(p.flags) & UTP_SOCKET else "tcp"

    def _alerts(self, r: ProbeResult) -> None:
        for a in self.session.pop_alerts():
            endpoint = getattr(a, "endpoint", None)
            if isinstance(a, (lt.peer_connect_alert, lt.peer_disconnected_alert, lt.incoming_connection_alert,
                              lt.block_finished_alert, lt.peer_error_alert)) and endpoint is not None:
                if not isinstance(a, (lt.peer_disconnected_alert, lt.peer_error_alert)):
                    self.seen.add(normalize_ip(str(endpoint[0])))
                pid = bytes(a.pid.to_bytes()) if isinstance(a, lt.peer_alert) else b""
                if any(pid) and r.peer_id is None:  # a peer that fails a piece may be gone before a sample
                    r.peer_id, r.connected, r.handshake_ok = pid, True, True
            if isinstance(a, lt.block_uploaded_alert):
                self.uploaded_blocks += 1
            elif isinstance(a, lt.piece_finished_alert) and int(a.piece_index) == r.piece_index:
                r.verified = True
            elif isinstance(a, lt.hash_failed_alert) and int(a.piece_index) == r.piece_index:
                r.verified = False

    def _settle(self, r: ProbeResult) -> None:
        """Only the candidate, and nothing uploaded, or the lane proves nothing either way."""
        st = self.handle.status()
        r.payload_bytes = int(st.total_payload_download)
        if self.transport:
            r.attempts.append(self.transport)
        if r.verified is not None and (self.seen - {self.ip} or self.ip not in self.seen):
            r.verified, r.reason = None, Reason.PROTOCOL
            r.detail = f"lane saw other addresses {sorted(self.seen)}: no sole-source verdict"
        elif r.verified is not None and (self.uploaded_blocks or int(st.total_payload_upload)):
            r.verified, r.reason, r.detail = None, Reason.PROTOCOL, "lane uploaded payload: verdict withheld"
        if r.verified is True:
            r.reason = None
        elif r.verified is False:
            r.reason, r.detail = Reason.HASH_MISMATCH, f"piece {r.piece_index} failed libtorrent's hash check"

    async def _sha256(self, piece: int) -> bytes | None:
        """SHA-256 of the piece as received (the row's piece_sha256), read back before the lane is deleted."""
        self.handle.read_piece(piece)
        for _ in range(200):
            await asyncio.sleep(POLL_S)
            for alert in self.session.pop_alerts():
                if isinstance(alert, lt.block_uploaded_alert):
                    self.uploaded_blocks += 1
                elif isinstance(alert, lt.read_piece_alert) and int(alert.piece) == piece:
                    return hashlib.sha256(bytes(alert.buffer)).digest() if not alert.error.value() else None
        return None

    def close(self) -> None:
        """Tear the lane down: torrent removed with its files, session gone, temp directory deleted."""
        with contextlib.suppress(Exception):
            if self.session is not None and self.handle is not None:
                self.session.remove_torrent(self.handle, lt.session.delete_files)
            if self.session is not None:
                self.session.pause()
        self.session = self.handle = None
        shutil.rmtree(self.dir, ignore_errors=True)
