from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tracker_watch.domain import bencode
from tracker_watch.domain import peerwire as pw

N = 21  # pieces: a bitfield of 3 bytes with spare bits

u32 = st.integers(0, 2**32 - 1)
index = st.integers(0, N - 1)
messages = st.one_of(
    st.sampled_from([pw.CHOKE, pw.UNCHOKE, pw.INTERESTED, pw.NOT_INTERESTED, pw.HAVE_ALL,
                     pw.HAVE_NONE]).map(pw.Message),
    st.builds(lambda k, i: pw.Message(k, index=i), st.sampled_from([pw.HAVE, pw.SUGGEST, pw.ALLOWED_FAST]), index),
    st.builds(lambda k, i, b, n: pw.Message(k, index=i, begin=b, length=n),
              st.sampled_from([pw.REQUEST, pw.CANCEL, pw.REJECT]), index, u32, st.integers(1, pw.MAX_REQUEST)),
    st.builds(lambda i, b, d: pw.Message(pw.PIECE, index=i, begin=b, length=len(d), data=d),
              index, u32, st.binary(max_size=pw.BLOCK)),
    st.binary(min_size=3, max_size=3).map(lambda d: pw.Message(pw.BITFIELD, data=d)),
    st.integers(0, 65535).map(lambda p: pw.Message(pw.PORT, port=p)),
    st.builds(lambda e, d: pw.Message(pw.EXTENDED, ext_id=e, data=d), st.integers(0, 255), st.binary(max_size=300)),
    st.just(pw.KEEPALIVE),
)


@given(st.lists(messages, max_size=8), st.integers(1, 50))
def test_roundtrip_in_any_chunking(msgs: list[pw.Message], chunk: int) -> None:
    wire = b"".join(pw.encode(m) for m in msgs)
    dec = pw.FrameDecoder(N)
    out: list[pw.Message] = []
    for i in range(0, len(wire), chunk):
        out += dec.feed(wire[i:i + chunk])
    assert out == msgs
    assert dec.pending == 0


@given(st.binary(max_size=400), st.integers(1, 64))
def test_arbitrary_bytes_raise_only_wire_error(data: bytes, chunk: int) -> None:
    dec = pw.FrameDecoder(N)
    with contextlib.suppress(pw.WireError):
        for i in range(0, len(data), chunk):
            dec.feed(data[i:i + chunk])
        assert dec.pending <= 4 + pw.max_body(N)


@given(st.binary(max_size=200))
def test_ext_handshake_raises_only_wire_error(data: bytes) -> None:
    with contextlib.suppress(pw.WireError):
        pw.parse_ext_handshake(data)


@given(st.binary(max_size=80))
def test_handshake_parse_raises_only_wire_error(data: bytes) -> None:
    with contextlib.suppress(pw.WireError):
        pw.parse_handshake(data)


def test_huge_length_rejected_before_the_body_arrives() -> None:
    dec = pw.FrameDecoder(N)
    with pytest.raises(pw.WireError, match="exceeds the limit"):
        dec.feed(struct.pack(">I", pw.MAX_BODY + 1))
    assert pw.FrameDecoder(N).feed(struct.pack(">IBII", pw.MAX_BODY, pw.PIECE, 0, 0)) == []  # the largest block


def test_bitfield_may_exceed_the_block_limit_by_piece_count_only() -> None:
    many = 8 * (pw.MAX_BODY + 100)
    bits = b"\xff" * pw.bitfield_len(many)
    msg = pw.FrameDecoder(many).feed(struct.pack(">IB", 1 + len(bits), pw.BITFIELD) + bits)[0]
    assert len(pw.bitfield_pieces(msg.data, many)) == many
    with pytest.raises(pw.WireError):
        pw.FrameDecoder(N).feed(struct.pack(">IB", 1 + len(bits), pw.BITFIELD) + bits)


@pytest.mark.parametrize(("body", "message"), [
    (struct.pack(">BI", pw.HAVE, N), "out of range"),
    (struct.pack(">B", pw.HAVE), "carries 0 bytes"),
    (struct.pack(">BIII", pw.REQUEST, 0, 0, pw.MAX_REQUEST + 1), "block length"),
    (struct.pack(">BIII", pw.REJECT, 0, 0, 0), "block length"),
    (struct.pack(">BB", pw.BITFIELD, 0xFF), "carries 1 bytes, not 3"),
    (struct.pack(">BI", pw.PIECE, 0), "shorter than its header"),
    (struct.pack(">B", pw.EXTENDED), "without an extension id"),
    (struct.pack(">BB", pw.UNCHOKE, 0), "carries 1 bytes, not 0"),
])
def test_malformed_messages(body: bytes, message: str) -> None:
    with pytest.raises(pw.WireError, match=message):
        pw.decode_body(body, N)


def test_unknown_ids_are_skipped_not_fatal() -> None:
    assert pw.decode_body(b"\x16abc", N) == pw.Message(22, data=b"abc")


def test_bitfield_spare_bits_ignored() -> None:
    assert pw.bitfield_pieces(b"\x80\x00\x0f", N) == {0, 20}  # 0x07: pieces 21-23, past the end


def test_handshake_roundtrip_and_bits() -> None:
    reserved = pw.reserved_bits(pw.EXTENSION_BIT, pw.FAST_BIT)
    hs = pw.parse_handshake(pw.encode_handshake(b"i" * 20, b"p" * 20, reserved))
    assert (hs.info_hash, hs.peer_id) == (b"i" * 20, b"p" * 20)
    assert (hs.has(pw.EXTENSION_BIT), hs.has(pw.FAST_BIT), hs.has(pw.DHT_BIT)) == (True, True, False)
    with pytest.raises(pw.WireError, match="not a BitTorrent handshake"):
        pw.parse_handshake(b"GET / HTTP/1.1\r\n" + bytes(52))


def test_ext_handshake_fields() -> None:
    payload = bencode.encode({b"m": {b"ut_metadata": 3, b"ut_pex": 1}, b"v": b"qBittorrent/4.6\x00",
                              b"yourip": bytes([127, 0, 0, 100]), b"p": 6881, b"reqq": 500})
    ext = pw.parse_ext_handshake(payload)
    assert ext == pw.ExtHandshake(client="qBittorrent/4.6?", yourip="127.0.0.100", listen_port=6881, reqq=500,
                                  extensions=("ut_metadata", "ut_pex"))
    odd = pw.parse_ext_handshake(bencode.encode({b"m": 5, b"v": 7, b"yourip": b"abc", b"p": 70000}))
    assert odd == pw.ExtHandshake()
    with pytest.raises(pw.WireError, match="not a dictionary"):
        pw.parse_ext_handshake(b"le")
    ours = pw.encode_ext_handshake("tracker-watch/0.1")
    assert pw.parse_ext_handshake(ours.data).client == "tracker-watch/0.1"


def test_new_peer_ids_are_fresh_and_20_bytes() -> None:
    a, b = pw.new_peer_id(), pw.new_peer_id()
    assert len(a) == len(b) == 20
    assert a != b
    assert a.startswith(b"-TW0001-")
