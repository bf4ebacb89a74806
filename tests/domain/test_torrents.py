"""libtorrent is the authority on torrents: every .torrent and info dict we accept, it accepts with the same
infohash; everything it refuses, we refuse with one line. Hand-made poison first, then a differential
property over generated (and deliberately broken) info dictionaries."""

from __future__ import annotations

import hashlib
from typing import Any

import libtorrent as lt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracker_watch.domain import bencode
from tracker_watch.domain.targets import TargetParseError, meta_from_info, parse_target
from tracker_watch.domain.torrents import MAX_TORRENT_BYTES

PIECE = 16384


def v1_info(**changes: Any) -> dict[bytes, Any]:
    info: dict[bytes, Any] = {b"name": b"film.mkv", b"piece length": PIECE, b"length": 3 * PIECE,
                              b"pieces": b"\x01" * 60}
    info.update({k.replace("_", " ").encode(): v for k, v in changes.items()})
    return {k: v for k, v in info.items() if v is not None}


def v2_info(tree: Any) -> dict[bytes, Any]:
    return {b"name": b"film", b"piece length": PIECE, b"meta version": 2, b"file tree": tree}


def torrent(info: dict[bytes, Any], **top: Any) -> bytes:
    return bencode.encode({b"info": info, **{k.encode(): v for k, v in top.items()}})


def libtorrent_accepts(data: bytes) -> bool:
    try:
        lt.torrent_info(data)
    except RuntimeError:
        return False
    return True


POISON = {
    "too few piece hashes": torrent(v1_info(pieces=b"\x01" * 40)),
    "empty name": torrent(v1_info(name=b"")),
    "dot-dot name": torrent(v1_info(name=b"..")),
    "files empty": torrent(v1_info(length=None, files=[])),
    "negative length": torrent(v1_info(length=-5)),
    "piece length 2^31": torrent(v1_info(piece_length=2**31)),
    "empty v2 file tree": torrent(v2_info({})),
    "v2 file without pieces root": torrent(v2_info({b"a.bin": {b"": {b"length": 3 * PIECE}}})),
    "signed integer": torrent(v1_info()).replace(b"i16384e", b"i+16384e"),
}


@pytest.mark.parametrize("name", sorted(POISON))
def test_what_libtorrent_refuses_is_refused_at_the_door(name: str) -> None:
    data = POISON[name]
    with pytest.raises(TargetParseError, match=r"^not a valid \.torrent file: ") as err:
        parse_target(data)
    assert "\n" not in str(err.value)
    if b"i+16384e" not in data:  # our decoder refuses that one before libtorrent is asked
        assert not libtorrent_accepts(data)


def test_odd_piece_length_accepted_like_libtorrent() -> None:
    """libtorrent takes a piece length of 16385 from a swarm; refusing it lost whole alert batches."""
    info = bencode.encode(v1_info(piece_length=PIECE + 1, length=3 * (PIECE + 1)))
    meta = meta_from_info(info)
    assert meta.piece_length == PIECE + 1
    assert meta.num_pieces == 3


def test_integer_attr_is_not_a_crash() -> None:
    info = v1_info(length=None, files=[{b"length": 3 * PIECE, b"path": [b"a"], b"attr": 7}])
    assert libtorrent_accepts(torrent(info))
    assert parse_target(torrent(info)).meta is not None


def test_oversized_file_is_refused_before_parsing() -> None:
    data = torrent(v1_info(comment=None), comment=b"x" * MAX_TORRENT_BYTES)
    with pytest.raises(TargetParseError, match="larger than"):
        parse_target(data)


def test_magnet_with_two_infohashes_is_refused() -> None:
    with pytest.raises(TargetParseError, match="more than one btih"):
        parse_target(f"magnet:?xt=urn:btih:{'a' * 40}&xt=urn:btih:{'b' * 40}")
    same = parse_target(f"magnet:?xt=urn:btih:{'a' * 40}&xt=urn:btih:{'A' * 40}")
    assert same.infohash_v1 == bytes.fromhex("a" * 40)


@pytest.mark.parametrize("b32", ["A" * 24 + "========", "a" * 31 + "1", "A" * 31 + "="])
def test_base32_btih_must_be_20_bytes(b32: str) -> None:
    with pytest.raises(TargetParseError, match="40 hex or 32 base32"):
        parse_target(f"magnet:?xt=urn:btih:{b32}")


# --- differential property ----------------------------------------------------------------------------
_ints = st.sampled_from([-1, 0, 1, 7, PIECE - 1, PIECE, PIECE + 1, 2 * PIECE, 3 * PIECE, 2**31, 2**40])
_names = st.sampled_from([b"", b".", b"..", b"a", b"a/b", b"\xff\xfe", b"x" * 300, b"film.mkv"])
_path = st.lists(_names, max_size=3)
_file = st.fixed_dictionaries({b"length": _ints}, optional={b"path": _path, b"attr": st.sampled_from([b"p", b"x", 7])})
_leaf = st.fixed_dictionaries({b"length": _ints}, optional={b"pieces root": st.binary(min_size=0, max_size=33)})
_tree = st.recursive(st.fixed_dictionaries({b"": _leaf}), lambda t: st.dictionaries(_names, t, max_size=3),
                     max_leaves=4)
_v1 = st.fixed_dictionaries(
    {b"name": _names, b"piece length": _ints},
    optional={b"length": _ints, b"files": st.lists(_file, max_size=3), b"pieces": st.binary(max_size=100),
              b"private": st.integers(0, 2)})
_v2 = st.fixed_dictionaries({b"name": _names, b"piece length": _ints, b"meta version": st.sampled_from([1, 2, 3]),
                             b"file tree": _tree})
_pieces_fixed = _v1.map(lambda i: _with_pieces(i) if _size(i) < 2**24 else i)


def _with_pieces(info: dict[bytes, Any]) -> dict[bytes, Any]:
    """The right number of piece hashes, so that the property reaches past libtorrent's first check."""
    piece_length = max(1, int(info[b"piece length"]))
    return {**info, b"pieces": b"\x02" * 20 * max(0, -(-_size(info) // piece_length))}


def _size(info: dict[bytes, Any]) -> int:
    if isinstance(info.get(b"length"), int):
        return int(info[b"length"])
    return sum(f[b"length"] for f in info.get(b"files", []) if isinstance(f[b"length"], int))


@settings(max_examples=300, deadline=None)
@given(st.one_of(_v1, _v2, _pieces_fixed))
def test_we_accept_exactly_what_libtorrent_accepts(info: dict[bytes, Any]) -> None:
    data = torrent(info)
    if not libtorrent_accepts(data):
        with pytest.raises(TargetParseError, match=r"^not a valid \.torrent file: [^\n]+$"):
            parse_target(data)
        return
    spec = parse_target(data)
    ti = lt.torrent_info(data)
    hashes = ti.info_hashes()
    raw = bencode.encode(info)
    assert spec.infohash_v1 == (hashlib.sha1(raw).digest() if hashes.has_v1() else None)
    assert spec.infohash_v2 == (hashlib.sha256(raw).digest() if hashes.has_v2() else None)
    assert spec.meta is not None
    assert spec.meta.num_pieces == ti.num_pieces()
    assert meta_from_info(raw) == spec.meta


# --- magnets, differentially --------------------------------------------------------------------------
_xt = st.sampled_from(["urn:btih:" + "a" * 40, "urn:btih:" + "B" * 40, "urn:btih:" + "a" * 39, "urn:btih:" + "0" * 40,
                       "urn:btih:" + "CDEFGHIJKLMNOPQRSTUVWXYZ234567AB", "urn:btih:" + "A" * 24 + "=" * 8,
                       "URN:BTIH:" + "c" * 40, "urn:btmh:1220" + "d" * 64, "urn:btmh:1220" + "d" * 62,
                       "urn:btmh:1114" + "e" * 64, "urn:btih:" + "a" * 40 + "x", "urn:sha1:" + "f" * 40, ""])
_extra = st.sampled_from(["dn=Film", "dn=", "tr=udp%3A%2F%2F127.0.0.1%3A6969", "x.pe=127.0.0.1:1", "ws=http://x",
                          "so=0-1", "&", "==", "tr=http%3A%2F%2F%5B%3A%3A1%2Fannounce"])


@settings(max_examples=300, deadline=None)
@given(st.lists(_xt.map(lambda x: "xt=" + x), max_size=3), st.lists(_extra, max_size=3),
       st.sampled_from(["magnet:?", "MAGNET:?", "magnet:"]))
def test_magnets_we_accept_libtorrent_accepts_with_the_same_hashes(xts: list[str], extras: list[str],
                                                                   prefix: str) -> None:
    uri = prefix + "&".join(xts + extras)
    try:
        lt_params = lt.parse_magnet_uri(uri)
    except RuntimeError:
        with pytest.raises(TargetParseError, match=r"^[^\n]+$"):
            parse_target(uri)
        return
    try:
        spec = parse_target(uri)
    except TargetParseError:
        return  # stricter than libtorrent: two infohashes, tracker URLs, all-zero hashes
    hashes = lt_params.info_hashes
    assert spec.infohash_v1 == (bytes(hashes.v1.to_bytes()) if hashes.has_v1() else None)
    assert spec.infohash_v2 == (bytes(hashes.v2.to_bytes()) if hashes.has_v2() else None)
