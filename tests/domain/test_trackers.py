"""Tracker URLs: validated, bounded, credentials removed, secrets kept out of logs."""

from __future__ import annotations

import pytest

from tracker_watch.domain.targets import TargetParseError, parse_magnet, parse_torrent
from tracker_watch.domain.trackers import (
    MAX_TRACKERS,
    MAX_URL_LENGTH,
    TrackerUrlError,
    clean_tracker_list,
    clean_tracker_url,
    redact,
)

V1 = "a" * 40


@pytest.mark.parametrize("url", [
    "http://tracker.example:99999/announce",      # port out of range
    "http://tracker.example:0/announce",
    "udp://tracker.example/announce",              # udp needs a port
    "udp://tracker.example",
    "http://tracker.example/announce\r\nX-Evil: 1",  # CR/LF: request and log injection
    "http://tracker.example/ann ounce",
    "http://tracker.example/\x00",
    "ftp://tracker.example/announce",
    "http:///announce",
    "http://[::1/announce",
    "http://bad_host!.example/announce",
    "http://tracker.example/" + "a" * MAX_URL_LENGTH,
    "wss://tracker.example/announce",
])
def test_unusable_urls_are_refused(url: str) -> None:
    with pytest.raises(TrackerUrlError):
        clean_tracker_url(url)


@pytest.mark.parametrize("url", [
    "http://tracker.example/announce", "https://tracker.example:8443/announce?passkey=x",
    "udp://tracker.example:6969", "udp://tracker.example:6969/announce", "http://127.0.0.1:6969/announce",
    "http://[2001:db8::1]:80/announce", "HTTP://Tracker.Example/announce",
])
def test_usable_urls_pass(url: str) -> None:
    clean = clean_tracker_url(url)
    assert clean.startswith(("http://", "https://", "udp://"))


def test_credentials_are_removed_and_never_in_an_error() -> None:
    assert clean_tracker_url("http://alice:s3cret@tracker.example/announce") == "http://tracker.example/announce"
    with pytest.raises(TrackerUrlError) as err:
        clean_tracker_url("udp://alice:s3cret@tracker.example/announce")
    assert "s3cret" not in str(err.value)
    assert "alice" not in str(err.value)


def test_redact_hides_credentials_and_passkeys() -> None:
    text = redact("https://bob:pw@t.example/0123456789abcdef0123456789abcdef/announce?passkey=abc&x=1&token=t")
    assert "pw" not in text
    assert "bob" not in text
    assert "abc" not in text.split("?")[1]
    assert "0123456789" not in text
    assert "x=1" in text
    assert "t.example" in text
    assert "\r" not in redact("http://t.example/\r\nInjected: yes")


def test_list_is_deduplicated_and_capped() -> None:
    urls = [f"http://t{i}.example/announce" for i in range(MAX_TRACKERS + 30)]
    assert len(clean_tracker_list(urls + urls, strict=False)) == MAX_TRACKERS
    assert clean_tracker_list(["http://a@t.example/", "http://t.example/", "junk"], strict=False) == (
        "http://t.example/",)


def test_magnet_refuses_bad_trackers_and_strips_credentials() -> None:
    with pytest.raises(TargetParseError, match="port"):
        parse_magnet(f"magnet:?xt=urn:btih:{V1}&tr=udp://t.example")
    with pytest.raises(TargetParseError) as err:
        parse_magnet(f"magnet:?xt=urn:btih:{V1}&tr=ftp://u:hunter2@t.example/")
    assert "hunter2" not in str(err.value)
    spec = parse_magnet(f"magnet:?xt=urn:btih:{V1}&tr=http://u:pw@t.example/announce")
    assert spec.trackers == ("http://t.example/announce",)
    many = "".join(f"&tr=http://t{i}.example/a" for i in range(200))
    assert len(parse_magnet(f"magnet:?xt=urn:btih:{V1}{many}").trackers) == MAX_TRACKERS


def test_torrent_drops_bad_trackers_and_caps_the_list() -> None:
    from tracker_watch.domain import bencode

    info = {b"name": b"x", b"piece length": 16384, b"length": 1, b"pieces": b"\0" * 20}
    tiers = [[f"http://t{i}.example/a".encode()] for i in range(120)]
    tiers.insert(0, [b"udp://noport.example", b"http://t.example:99999/", b"http://ok.example/a\r\n"])
    data = bencode.encode({b"announce": b"http://u:pw@first.example/a", b"announce-list": tiers, b"info": info})
    spec = parse_torrent(data)
    assert spec.trackers[0] == "http://first.example/a"
    assert len(spec.trackers) == MAX_TRACKERS
    assert all("example:99999" not in t and "noport" not in t for t in spec.trackers)
