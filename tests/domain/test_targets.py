from __future__ import annotations

import base64
from pathlib import Path

import libtorrent as lt
import pytest

from tracker_watch.demo.swarm import make_content
from tracker_watch.domain import bencode
from tracker_watch.domain.targets import TargetParseError, meta_from_info, parse_target

V1 = "a" * 40
V2 = "b" * 64


def test_hex_v1_and_v2() -> None:
    assert parse_target(V1).infohash_v1 == bytes.fromhex(V1)
    spec = parse_target(V2.upper())
    assert spec.infohash_v2 == bytes.fromhex(V2)
    assert spec.infohash_v1 is None
    assert spec.kind == "hex"


@pytest.mark.parametrize(("text", "message"), [
    ("a" * 39, "40 hex characters .* got 39"),
    ("a" * 41, "got 41"),
    ("g" * 40, "not hexadecimal"),
    ("", "not hexadecimal"),
    ("magnet:?dn=film", "no xt=urn:btih"),
    ("magnet:?xt=urn:btih:" + "a" * 39, "40 hex or 32 base32"),
    ("magnet:?xt=urn:btmh:" + "1220" + "a" * 60, "1220' followed by 64 hex"),
    ("magnet:?xt=urn:btih:" + V1 + "&tr=ftp://x/announce", "not an http"),
])
def test_bad_input_is_one_clear_line(text: str, message: str) -> None:
    with pytest.raises(TargetParseError, match=message) as err:
        parse_target(text)
    assert "\n" not in str(err.value)


def test_magnet_forms() -> None:
    b32 = base64.b32encode(bytes.fromhex(V1)).decode()
    assert parse_target(f"magnet:?xt=urn:btih:{b32}").infohash_v1 == bytes.fromhex(V1)
    hybrid = parse_target(f"magnet:?xt=urn:btih:{V1}&xt=urn:btmh:1220{V2}&dn=Film%20X"
                          "&tr=http%3A%2F%2F127.0.0.1%3A1%2Fannounce&tr=udp://127.0.0.1:2")
    assert hybrid.infohash_v1 == bytes.fromhex(V1)
    assert hybrid.infohash_v2 == bytes.fromhex(V2)
    assert hybrid.display_name == "Film X"
    assert hybrid.trackers == ("http://127.0.0.1:1/announce", "udp://127.0.0.1:2")
    assert hybrid.key == V1


@pytest.mark.parametrize("version", ["v1", "v2", "hybrid"])
def test_torrent_infohashes_match_libtorrent(tmp_path: Path, version: str) -> None:
    content = make_content(tmp_path, size=300_000, piece_length=16384, version=version)
    spec = parse_target(content.torrent)
    ti = lt.torrent_info(content.torrent)
    assert spec.kind == "torrent"
    assert spec.infohash_v1 == content.v1
    assert spec.infohash_v2 == content.v2
    assert spec.meta is not None
    assert spec.meta.total_size == 300_000
    assert spec.meta.num_pieces == ti.num_pieces()
    assert spec.meta.piece_length == 16384
    assert spec.info is not None
    assert meta_from_info(spec.info) == spec.meta


def test_truncated_torrent(tmp_path: Path) -> None:
    content = make_content(tmp_path, size=100_000, piece_length=16384)
    with pytest.raises(TargetParseError, match=r"not a valid \.torrent file: truncated"):
        parse_target(content.torrent[: len(content.torrent) // 2])


def test_torrent_trackers_are_read(tmp_path: Path) -> None:
    content = make_content(tmp_path, size=50_000, piece_length=16384, version="v1")
    top = bencode.decode(content.torrent)
    assert isinstance(top, dict)
    top[b"announce"] = b"http://127.0.0.1:9/announce/x"
    top[b"announce-list"] = [[b"udp://127.0.0.1:10"], [b"http://127.0.0.1:9/announce/x", b"wss://ignored"]]
    spec = parse_target(bencode.encode(top))
    assert spec.trackers == ("http://127.0.0.1:9/announce/x", "udp://127.0.0.1:10")
    assert spec.infohash_v1 == content.v1
