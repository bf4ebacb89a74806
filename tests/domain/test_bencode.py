from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tracker_watch.domain import bencode

values = st.recursive(
    st.integers() | st.binary(max_size=40),
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
