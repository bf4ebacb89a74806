from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tracker_watch.domain import bencode
from tracker_watch.domain import tracker_proto as tp

REQ = tp.AnnounceRequest(info_hash=b"\x01" * 20, peer_id=b"-TW0100-abcdefabcdef", port=6881, left=5, numwant=50,
                         key=7, event="started")


def test_http_url_escapes_binary_hash() -> None:
    url = tp.http_announce_url("http://127.0.0.1:1/announce?passkey=x", REQ)
    assert url.startswith("http://127.0.0.1:1/announce?passkey=x&info_hash=%01%01")
    assert "event=started" in url
    assert "compact=1" in url


def test_compact_and_dict_peers() -> None:
    body = bencode.encode({b"interval": 30, b"min interval": 10,
                           b"peers": bytes([127, 0, 0, 11]) + struct.pack(">H", 6881),
                           b"peers6": bytes(15) + b"\x01" + struct.pack(">H", 7000)})
    reply = tp.parse_http_reply(body)
    assert reply.peers == (("127.0.0.11", 6881), ("::1", 7000))
    assert (reply.interval, reply.min_interval) == (30, 10)
    listed = tp.parse_http_reply(bencode.encode({b"interval": 5, b"peers": [
        {b"ip": b"10.0.0.1", b"port": 1}, {b"ip": b"example.org", b"port": 2}, {b"ip": b"10.0.0.2", b"port": 0}]}))
    assert listed.peers == (("10.0.0.1", 1),)


@pytest.mark.parametrize(("body", "message"), [
    (bencode.encode({b"failure reason": b"unregistered torrent"}), "unregistered torrent"),
    (bencode.encode({b"peers": b""}), "interval"),
    (bencode.encode({b"interval": 1, b"peers": b"\x01\x02\x03"}), "multiple of 6"),
    (b"<html>", "not bencoded"),
])
def test_bad_replies(body: bytes, message: str) -> None:
    with pytest.raises(tp.TrackerError, match=message):
        tp.parse_http_reply(body)


@given(st.binary(max_size=300))
def test_hostile_replies_only_raise_tracker_error(body: bytes) -> None:
    with contextlib.suppress(tp.TrackerError):
        tp.parse_http_reply(body)


def test_udp_packets() -> None:
    assert len(tp.udp_connect_request(9)) == 16
    conn_id = tp.parse_udp_connect_reply(struct.pack(">IIQ", 0, 9, 42), 9)
    packet = tp.udp_announce_request(conn_id, 10, REQ)
    assert len(packet) == 98
    assert struct.unpack(">Q", packet[:8])[0] == 42
    reply = struct.pack(">IIIII", 1, 10, 60, 1, 2) + bytes([10, 0, 0, 1, 0, 80])
    parsed = tp.parse_udp_announce_reply(reply, 10, ipv6=False)
    assert parsed.peers == (("10.0.0.1", 80),)
    assert parsed.interval == 60
    with pytest.raises(tp.TrackerError, match="another transaction"):
        tp.parse_udp_announce_reply(reply, 11, ipv6=False)
    with pytest.raises(tp.TrackerError, match="banned"):
        tp.parse_udp_announce_reply(struct.pack(">II", 3, 10) + b"banned", 10, ipv6=False)


def test_a_flood_of_peers_is_capped_and_counted_not_parsed() -> None:
    n = 2 * 2**20 // 6  # a 2 MiB compact list
    blob = b"".join(struct.pack(">4sH", bytes([8, 8, i >> 8 & 255, i & 255]), 6881) for i in range(n))
    reply = tp.parse_http_reply(bencode.encode({b"interval": 60, b"peers": blob}), max_peers=200)
    assert len(reply.peers) == 200
    assert reply.omitted == n - 200
    six = tp.parse_http_reply(bencode.encode({b"interval": 60, b"peers": blob[:600],
                                              b"peers6": (bytes(15) + b"\x01\x1a\xe1") * 50}), max_peers=120)
    assert len(six.peers) == 120
    assert six.omitted == 30
    listed = tp.parse_http_reply(bencode.encode({b"interval": 5, b"peers": [
        {b"ip": b"8.8.8.8", b"port": p} for p in range(1, 1001)]}), max_peers=10)
    assert len(listed.peers) == 10
    assert listed.omitted == 990
    udp = struct.pack(">IIIII", tp.ACTION_ANNOUNCE, 9, 60, 0, 0) + blob[:6000]
    assert tp.parse_udp_announce_reply(udp, 9, ipv6=False, max_peers=5).omitted == 995


def test_stray_datagrams_are_recognised() -> None:
    assert tp.udp_reply_matches(struct.pack(">II", tp.ACTION_CONNECT, 77) + bytes(8), 77)
    assert not tp.udp_reply_matches(struct.pack(">II", tp.ACTION_CONNECT, 78) + bytes(8), 77)
    assert not tp.udp_reply_matches(b"junk", 77)
