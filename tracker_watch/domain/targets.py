"""What a rights holder registers: a v1/v2 hex infohash, a magnet link (btih/btmh) or a .torrent file.

Pure parsing. Every rejection is a TargetParseError whose message is one line a user can act on.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import re
import urllib.parse
from dataclasses import dataclass, field
from typing import Literal

from tracker_watch.domain import bencode, torrents
from tracker_watch.domain import trackers as trackers_mod
from tracker_watch.domain.torrents import TorrentMeta

Kind = Literal["hex", "magnet", "torrent"]
_HEX = re.compile(r"[0-9a-fA-F]+")
_BASE32 = re.compile(r"[A-Z2-7]{32}")
# multihash prefix of a SHA2-256 digest (code 0x12, length 0x20), as in BEP 9/52 btmh links
_BTMH_PREFIX = "1220"
MAX_PEER_HINTS = 50  # x.pe hints kept per magnet; a link is not a peer list


class TargetParseError(ValueError):
    """The input is not a usable infohash, magnet link or .torrent file."""


@dataclass(frozen=True)
class TargetSpec:
    kind: Kind
    infohash_v1: bytes | None = None
    infohash_v2: bytes | None = None
    display_name: str | None = None
    trackers: tuple[str, ...] = ()
    info: bytes | None = field(default=None, repr=False)  # raw bencoded info dict, when known
    meta: TorrentMeta | None = None
    # magnet `x.pe` peer hints: literal IPs only, as "a.b.c.d:p" or "[v6]:p" (see parse_peer_hints)
    peer_hints: tuple[str, ...] = ()
    ignored_peer_hints: int = 0  # hints that named a host (never resolved), were malformed or beyond the limit

    @property
    def key(self) -> str:
        """Hex of the v1 infohash if any, else of the v2 one: the swarm's name in logs."""
        return (self.infohash_v1 or self.infohash_v2 or b"").hex()


def parse_target(value: str | bytes) -> TargetSpec:
    """Dispatch on the shape of the input: bytes starting with 'd' are a .torrent file."""
    if isinstance(value, bytes):
        if value.startswith(b"d"):
            return parse_torrent(value)
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            raise TargetParseError("input is neither a .torrent file, a magnet link nor a hex infohash") from None
    text = value.strip()
    if text.lower().startswith("magnet:"):
        return parse_magnet(text)
    return parse_hex(text)


def parse_hex(text: str) -> TargetSpec:
    text = text.strip()
    if not _HEX.fullmatch(text):
        raise TargetParseError(f"infohash {text[:80]!r} is not hexadecimal")
    if len(text) == 40:
        return TargetSpec(kind="hex", infohash_v1=_nonzero(bytes.fromhex(text)))
    if len(text) == 64:
        return TargetSpec(kind="hex", infohash_v2=_nonzero(bytes.fromhex(text)))
    raise TargetParseError(
        f"infohash must be 40 hex characters (v1, SHA-1) or 64 (v2, SHA-256), got {len(text)}")


def parse_magnet(text: str) -> TargetSpec:
    if not text.startswith("magnet:?"):  # libtorrent takes nothing else (not even MAGNET:?)
        raise TargetParseError("magnet link must start with 'magnet:?'")
    parsed = urllib.parse.urlsplit(text)
    params = urllib.parse.parse_qs(parsed.query, keep_blank_values=True)
    # prefixes in lower case, as libtorrent reads them (it ignores `URN:BTIH:` and would watch nothing)
    v1s = {_nonzero(_btih(xt[9:])) for xt in params.get("xt", []) if xt.startswith("urn:btih:")}
    v2s = {_nonzero(_btmh(xt[9:])) for xt in params.get("xt", []) if xt.startswith("urn:btmh:")}
    if len(v1s) > 1 or len(v2s) > 1:
        # which one is the work? Guessing would watch (and accuse) in the wrong swarm
        raise TargetParseError("magnet link names more than one btih or btmh infohash; register each separately")
    v1 = next(iter(v1s), None)
    v2 = next(iter(v2s), None)
    if v1 is None and v2 is None:
        raise TargetParseError("magnet link has no xt=urn:btih:… or xt=urn:btmh:… parameter")
    trackers = _tracker_list(params.get("tr", []), strict=True)
    names = params.get("dn", [])
    hints, ignored = parse_peer_hints(params.get("x.pe", []))
    return TargetSpec(kind="magnet", infohash_v1=v1, infohash_v2=v2,
                      display_name=names[0] if names and names[0] else None, trackers=trackers,
                      peer_hints=hints, ignored_peer_hints=ignored)


def parse_peer_hints(values: list[str]) -> tuple[tuple[str, ...], int]:
    """BEP 9 `x.pe` peer addresses: (hints kept, number ignored).

    libtorrent's parse_magnet_uri accepts `host:port` too, but a name would have to be resolved, and we never
    resolve names given to us: only literal IPv4 (`a.b.c.d:p`) and bracketed IPv6 (`[::1]:p`) with a port in
    1–65535 are kept, canonical and deduplicated; the rest are counted, never an error (a hint is a hint).
    """
    kept: list[str] = []
    ignored = 0
    for value in values:
        hint = peer_hint(value)
        if hint is None or len(kept) >= MAX_PEER_HINTS:
            ignored += hint is None or hint not in kept
        elif hint not in kept:
            kept.append(hint)
    return tuple(kept), ignored


def peer_hint(value: str) -> str | None:
    """One `x.pe` value as canonical "ip:port" / "[ip]:port", or None when it is not a literal address."""
    host, sep, port_text = value.strip().rpartition(":")
    if not sep or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        return None
    bracketed = host.startswith("[") and host.endswith("]")
    try:
        addr = ipaddress.ip_address(host[1:-1] if bracketed else host)
    except ValueError:
        return None  # a host name (never resolved) or garbage
    if isinstance(addr, ipaddress.IPv6Address):
        if not bracketed or addr.scope_id:
            return None  # "::1:80" is ambiguous; BEP 9 and libtorrent want brackets
        if addr.ipv4_mapped is not None:
            return f"{addr.ipv4_mapped}:{int(port_text)}"
        return f"[{addr.compressed}]:{int(port_text)}"
    if bracketed:
        return None
    return f"{addr}:{int(port_text)}"


def hint_endpoint(hint: str) -> tuple[str, int]:
    """"ip:port" / "[ip]:port" (as kept by peer_hint) to (ip, port)."""
    host, _, port = hint.rpartition(":")
    return host.strip("[]"), int(port)


def _nonzero(infohash: bytes) -> bytes:
    if not any(infohash):
        raise TargetParseError("an all-zero infohash names no swarm (libtorrent treats it as absent)")
    return infohash


def _btih(value: str) -> bytes:
    if len(value) == 40 and _HEX.fullmatch(value):
        return bytes.fromhex(value)
    if _BASE32.fullmatch(value.upper()):  # exactly 32 symbols, no padding: always 20 bytes
        return base64.b32decode(value.upper())
    raise TargetParseError(f"magnet btih {value[:80]!r} must be 40 hex or 32 base32 characters")


def _btmh(value: str) -> bytes:
    if not (len(value) == 68 and value.lower().startswith(_BTMH_PREFIX) and _HEX.fullmatch(value)):
        raise TargetParseError(f"magnet btmh {value[:80]!r} must be '1220' followed by 64 hex characters (SHA-256)")
    return bytes.fromhex(value[4:])


def _tracker_list(urls: list[str], strict: bool) -> tuple[str, ...]:
    """Validated, credentials removed, at most trackers.MAX_TRACKERS (see domain/trackers.py)."""
    try:
        return trackers_mod.clean_tracker_list(urls, strict)
    except trackers_mod.TrackerUrlError as exc:
        raise TargetParseError(str(exc)) from None


def parse_torrent(data: bytes) -> TargetSpec:
    """A .torrent file, accepted only if libtorrent accepts it and computes the infohash we compute.

    Our strict decoder finds the exact bytes of the first (and only) top-level `info` value; libtorrent,
    the authority on what we can watch, must accept the file and agree on the infohash of those bytes.
    """
    try:
        top, info_raw = bencode.decode_torrent(data)
        checked = torrents.check_torrent(data)
    except (bencode.BencodeError, torrents.TorrentError) as exc:
        raise TargetParseError(f"not a valid .torrent file: {exc}") from None
    v1 = hashlib.sha1(info_raw).digest() if checked.infohash_v1 else None
    v2 = hashlib.sha256(info_raw).digest() if checked.infohash_v2 else None
    if (v1, v2) != (checked.infohash_v1, checked.infohash_v2):
        raise TargetParseError("not a valid .torrent file: its infohash is ambiguous (libtorrent reads another info)")
    trackers: list[str] = []
    if isinstance(top.get(b"announce"), bytes):
        trackers.append(top[b"announce"].decode("utf-8", "replace"))
    tiers = top.get(b"announce-list")
    for tier in tiers if isinstance(tiers, list) else []:
        if isinstance(tier, list):
            trackers += [t.decode("utf-8", "replace") for t in tier if isinstance(t, bytes)]
    return TargetSpec(kind="torrent", infohash_v1=v1, infohash_v2=v2, display_name=checked.meta.name,
                      trackers=_tracker_list(trackers, strict=False), info=info_raw, meta=checked.meta)


def meta_from_info(info_raw: bytes) -> TorrentMeta:
    """Metadata of a raw info dict (stored, or fetched from peers with ut_metadata), as libtorrent reads it."""
    try:
        return torrents.meta_of_info(info_raw)
    except torrents.TorrentError as exc:
        raise TargetParseError(f"not a valid info dictionary: {exc}") from None


def v1_piece_hashes(info_raw: bytes) -> bytes | None:
    """The concatenated SHA-1 piece hashes of a v1 or hybrid info dict (None for v2-only)."""
    try:
        return torrents.v1_piece_hashes(info_raw)
    except torrents.TorrentError as exc:
        raise TargetParseError(f"not a valid info dictionary: {exc}") from None
