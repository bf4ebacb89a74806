"""Tracker announce protocol, HTTP (BEP 3, 7, 23) and UDP (BEP 15): requests and replies. Pure.

The I/O lives in swarm/announcer.py; this module only builds bytes and parses them, so malformed
replies from hostile trackers are handled (and tested) without a network.
"""

from __future__ import annotations

import ipaddress
import struct
import urllib.parse
from dataclasses import dataclass

from tracker_watch.domain import bencode

UDP_MAGIC = 0x41727101980
ACTION_CONNECT, ACTION_ANNOUNCE, ACTION_ERROR = 0, 1, 3
EVENTS = {"": 0, "completed": 1, "started": 2, "stopped": 3}
# Peers taken from one reply: numwant is at most 2000, and a tracker that lists more than that (a 2 MiB
# compact list is 350,000 entries) is flooding, not answering. The rest is counted, never parsed.
MAX_PEERS_PER_REPLY = 2000


class TrackerError(ValueError):
    """The tracker's reply is malformed or reports a failure."""


@dataclass(frozen=True)
class AnnounceRequest:
    info_hash: bytes  # 20 bytes: a v1 hash, or a v2 hash truncated as BEP 52 prescribes
    peer_id: bytes
    port: int
    left: int
    numwant: int
    key: int
    event: str = ""  # "", "started", "stopped", "completed"


@dataclass(frozen=True)
class AnnounceReply:
    interval: int
    min_interval: int | None
    peers: tuple[tuple[str, int], ...]
    complete: int | None = None
    incomplete: int | None = None
    warning: str | None = None
    omitted: int = 0  # peers listed beyond the cap, never parsed


def http_announce_url(base: str, req: AnnounceRequest) -> str:
    query = {
        "info_hash": req.info_hash, "peer_id": req.peer_id, "port": str(req.port), "uploaded": "0",
        "downloaded": "0", "left": str(req.left), "compact": "1", "numwant": str(req.numwant),
        "key": f"{req.key:08x}",
    }
    if req.event:
        query["event"] = req.event
    sep = "&" if "?" in base else "?"
    return base + sep + urllib.parse.urlencode(query, quote_via=urllib.parse.quote)


def parse_http_reply(body: bytes, max_peers: int = MAX_PEERS_PER_REPLY) -> AnnounceReply:
    try:
        doc = bencode.decode(body)
    except bencode.BencodeError as exc:
        raise TrackerError(f"reply is not bencoded: {exc}") from None
    if not isinstance(doc, dict):
        raise TrackerError("reply is not a dictionary")
    if isinstance(doc.get(b"failure reason"), bytes):
        raise TrackerError("tracker failure: " + doc[b"failure reason"].decode("utf-8", "replace")[:200])
    interval = doc.get(b"interval")
    if not isinstance(interval, int) or interval < 0:
        raise TrackerError("reply has no valid 'interval'")
    min_interval = doc.get(b"min interval")
    peers, omitted = _peers_v4(doc.get(b"peers", b""), max_peers)
    peers6 = doc.get(b"peers6", b"")
    if isinstance(peers6, bytes):
        more, omitted6 = _compact(peers6, 16, max_peers - len(peers))
        peers, omitted = peers + more, omitted + omitted6
    warning = doc.get(b"warning message")
    return AnnounceReply(
        interval=interval, min_interval=min_interval if isinstance(min_interval, int) else None,
        peers=tuple(peers), complete=_int_or_none(doc.get(b"complete")),
        incomplete=_int_or_none(doc.get(b"incomplete")),
        warning=warning.decode("utf-8", "replace")[:200] if isinstance(warning, bytes) else None,
        omitted=omitted)


def _int_or_none(v: object) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _peers_v4(value: object, max_peers: int) -> tuple[list[tuple[str, int]], int]:
    if isinstance(value, bytes):
        return _compact(value, 4, max_peers)
    if isinstance(value, list):  # non-compact list of dicts
        out: list[tuple[str, int]] = []
        for n, entry in enumerate(value):
            if len(out) >= max_peers:
                return out, len(value) - n
            if isinstance(entry, dict) and isinstance(entry.get(b"ip"), bytes) and isinstance(entry.get(b"port"), int):
                try:
                    ip = str(ipaddress.ip_address(entry[b"ip"].decode("ascii")))
                except (UnicodeDecodeError, ValueError):
                    continue  # host names are not peers we can attribute; skip
                if 0 < entry[b"port"] < 65536:
                    out.append((ip, entry[b"port"]))
        return out, 0
    raise TrackerError("'peers' is neither a compact string nor a list")


def _compact(blob: bytes, addr_len: int, max_peers: int) -> tuple[list[tuple[str, int]], int]:
    """Up to max_peers (address, port) pairs, and how many entries were left unparsed."""
    step = addr_len + 2
    if len(blob) % step:
        raise TrackerError(f"compact peer list length {len(blob)} is not a multiple of {step}")
    end = min(len(blob), max(max_peers, 0) * step)
    out = []
    for i in range(0, end, step):
        ip = str(ipaddress.ip_address(blob[i:i + addr_len]))
        (port,) = struct.unpack(">H", blob[i + addr_len:i + step])
        if port:
            out.append((ip, port))
    return out, (len(blob) - end) // step


def udp_connect_request(transaction_id: int) -> bytes:
    return struct.pack(">QII", UDP_MAGIC, ACTION_CONNECT, transaction_id)


def parse_udp_connect_reply(data: bytes, transaction_id: int) -> int:
    action, _ = _udp_header(data, transaction_id)
    if action != ACTION_CONNECT or len(data) < 16:
        raise TrackerError("bad UDP connect reply")
    (connection_id,) = struct.unpack(">Q", data[8:16])
    return int(connection_id)


def udp_announce_request(connection_id: int, transaction_id: int, req: AnnounceRequest) -> bytes:
    return struct.pack(
        ">QII20s20sQQQIIIiH", connection_id, ACTION_ANNOUNCE, transaction_id, req.info_hash, req.peer_id,
        0, req.left, 0, EVENTS[req.event], 0, req.key, req.numwant, req.port)


def parse_udp_announce_reply(data: bytes, transaction_id: int, ipv6: bool,
                             max_peers: int = MAX_PEERS_PER_REPLY) -> AnnounceReply:
    action, _ = _udp_header(data, transaction_id)
    if action != ACTION_ANNOUNCE or len(data) < 20:
        raise TrackerError("bad UDP announce reply")
    interval, leechers, seeders = struct.unpack(">III", data[8:20])
    peers, omitted = _compact(data[20:], 16 if ipv6 else 4, max_peers)
    return AnnounceReply(interval=interval, min_interval=None, peers=tuple(peers),
                         complete=seeders, incomplete=leechers, omitted=omitted)


def udp_reply_matches(data: bytes, transaction_id: int) -> bool:
    """Is this datagram an answer to our request? Anything else (a stray or forged datagram, a late
    answer to an earlier request) is ignored while we wait, as BEP 15 clients do."""
    return len(data) >= 8 and struct.unpack(">I", data[4:8])[0] == transaction_id


def _udp_header(data: bytes, transaction_id: int) -> tuple[int, int]:
    if len(data) < 8:
        raise TrackerError("UDP reply shorter than 8 bytes")
    action, tid = struct.unpack(">II", data[:8])
    if tid != transaction_id:
        raise TrackerError("UDP reply for another transaction")
    if action == ACTION_ERROR:
        raise TrackerError("tracker failure: " + data[8:].decode("utf-8", "replace")[:200])
    return action, tid
