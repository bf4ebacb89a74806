from __future__ import annotations

import contextlib

import libtorrent as lt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tracker_watch.domain import bencode

INT64 = st.integers(min_value=-(2**63) + 1, max_value=2**63 - 1)
values = st.recursive(
    INT64 | st.binary(max_size=40),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.binary(max_size=10), children, max_size=5),
    max_leaves=20,
)


@given(values)
def test_roundtrip(value: bencode.Value) -> None:
    assert bencode.decode(bencode.encode(value)) == value


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    with contextlib.suppress(bencode.BencodeError):
        bencode.decode(data)


@pytest.mark.parametrize(("data", "message"), [
    (b"i12", "truncated integer"),
    (b"i-0e", "malformed integer"),
    (b"i012e", "malformed integer"),
    (b"5:abc", "truncated"),
    (b"l1:a", "truncated"),
    (b"d1:ai1ee1:x", "trailing data"),
    (b"di1ei2ee", "not a string"),
    (b"x", "unexpected byte"),
    (b"i+1e", "malformed integer"),
    (b"i1_0e", "malformed integer"),
    (b"i\xb2e", "malformed integer"),
    (b"i 1e", "malformed integer"),
    (b"i9223372036854775808e", "64 bits"),
    (b"d1:ai1e1:ai2ee", "repeated"),
    (b"99999999999999999999:x", "malformed string length"),
])
def test_errors_say_what_and_where(data: bytes, message: str) -> None:
    with pytest.raises(bencode.BencodeError, match=message):
        bencode.decode(data)


def test_info_span_is_the_exact_bytes() -> None:
    info = b"d4:name1:x12:piece lengthi16384ee"
    top, raw = bencode.decode_torrent(b"d8:announce3:abc4:info" + info + b"e")
    assert raw == info
    assert top[b"info"] == {b"name": b"x", b"piece length": 16384}


def test_torrent_without_info_is_rejected() -> None:
    with pytest.raises(bencode.BencodeError, match="no 'info'"):
        bencode.decode_torrent(b"d8:announce3:abce")


def test_repeated_info_is_refused_not_guessed() -> None:
    decoy = b"d4:name5:decoy12:piece lengthi16384ee"
    real = b"d4:name4:real12:piece lengthi16384ee"
    with pytest.raises(bencode.BencodeError, match="repeated"):
        bencode.decode_torrent(b"d4:info" + real + b"4:info" + decoy + b"e")


def test_a_key_that_looks_internal_is_just_a_key() -> None:
    # a top-level key once used as an internal marker must not redirect the infohash
    info = b"d4:name1:x12:piece lengthi16384ee"
    top, raw = bencode.decode_torrent(b"d10:\x00info-spanli0ei3ee4:info" + info + b"e")
    assert raw == info
    assert top[b"\x00info-span"] == [0, 3]


def _libtorrent(data: bytes) -> object:
    try:
        return lt.bdecode(data)
    except RuntimeError:
        return _REFUSED


_REFUSED = object()
# bencode-shaped input, so that the property explores valid and nearly valid documents, not just noise
_tokens = st.lists(st.sampled_from([b"i", b"e", b"l", b"d", b"0", b"1", b"2", b"-", b"+", b":", b"a", b"4:spam",
                                    b"i42e", b"i-1e", b"i00e", b"1:a", b"0:", b"19:", b"_"]), max_size=25)


@given(st.one_of(st.binary(max_size=60), _tokens.map(b"".join), values.map(bencode.encode)))
def test_never_more_lenient_than_libtorrent(data: bytes) -> None:
    """Differential: whatever we decode, libtorrent decodes to the same value; what it refuses, we refuse."""
    try:
        ours = bencode.decode(data)
    except bencode.BencodeError:
        return
    assert _libtorrent(data) == ours
