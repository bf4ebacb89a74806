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
