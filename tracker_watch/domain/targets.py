"""What a rights holder registers: a v1/v2 hex infohash, a magnet link (btih/btmh) or a .torrent file.

Pure parsing. Every rejection is a TargetParseError whose message is one line a user can act on.
"""

from __future__ import annotations

import base64
import hashlib
import re
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Literal

from tracker_watch.domain import bencode
from tracker_watch.domain import trackers as trackers_mod

Kind = Literal["hex", "magnet", "torrent"]
_HEX = re.compile(r"[0-9a-fA-F]+")
# multihash prefix of a SHA2-256 digest (code 0x12, length 0x20), as in BEP 9/52 btmh links
_BTMH_PREFIX = "1220"


class TargetParseError(ValueError):
    """The input is not a usable infohash, magnet link or .torrent file."""


@dataclass(frozen=True)
class TorrentMeta:
    """What the info dictionary says about the content."""

    name: str
    total_size: int
    piece_length: int
    num_pieces: int
    files: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class TargetSpec:
    kind: Kind
    infohash_v1: bytes | None = None
    infohash_v2: bytes | None = None
    display_name: str | None = None
    trackers: tuple[str, ...] = ()
    info: bytes | None = field(default=None, repr=False)  # raw bencoded info dict, when known
    meta: TorrentMeta | None = None

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
        return TargetSpec(kind="hex", infohash_v1=bytes.fromhex(text))
    if len(text) == 64:
        return TargetSpec(kind="hex", infohash_v2=bytes.fromhex(text))
    raise TargetParseError(
        f"infohash must be 40 hex characters (v1, SHA-1) or 64 (v2, SHA-256), got {len(text)}")


def parse_magnet(text: str) -> TargetSpec:
    parsed = urllib.parse.urlsplit(text)
    if parsed.scheme.lower() != "magnet":
        raise TargetParseError("magnet link must start with 'magnet:?'")
    params = urllib.parse.parse_qs(parsed.query, keep_blank_values=True)
    v1 = v2 = None
    for xt in params.get("xt", []):
        lower = xt.lower()
        if lower.startswith("urn:btih:"):
            v1 = _btih(xt[9:])
        elif lower.startswith("urn:btmh:"):
            v2 = _btmh(xt[9:])
    if v1 is None and v2 is None:
        raise TargetParseError("magnet link has no xt=urn:btih:… or xt=urn:btmh:… parameter")
    trackers = _tracker_list(params.get("tr", []), strict=True)
    names = params.get("dn", [])
    return TargetSpec(kind="magnet", infohash_v1=v1, infohash_v2=v2,
                      display_name=names[0] if names and names[0] else None, trackers=trackers)


def _btih(value: str) -> bytes:
    if len(value) == 40 and _HEX.fullmatch(value):
        return bytes.fromhex(value)
    if len(value) == 32:
        try:
            return base64.b32decode(value.upper())
        except ValueError:
            pass
    raise TargetParseError(f"magnet btih {value[:80]!r} must be 40 hex or 32 base32 characters")


def _btmh(value: str) -> bytes:
    if not (len(value) == 68 and value.lower().startswith(_BTMH_PREFIX) and _HEX.fullmatch(value)):
        raise TargetParseError(f"magnet btmh {value[:80]!r} must be '1220' followed by 64 hex characters (SHA-256)")
    return bytes.fromhex(value[4:])


def _check_tracker_url(url: str) -> None:
    _tracker_list([url], strict=True)


def _tracker_list(urls: list[str], strict: bool) -> tuple[str, ...]:
    """Validated, credentials removed, at most trackers.MAX_TRACKERS (see domain/trackers.py)."""
    try:
        return trackers_mod.clean_tracker_list(urls, strict)
    except trackers_mod.TrackerUrlError as exc:
        raise TargetParseError(str(exc)) from None


def parse_torrent(data: bytes) -> TargetSpec:
    try:
        top, info_raw = bencode.decode_torrent(data)
    except bencode.BencodeError as exc:
        raise TargetParseError(f"not a valid .torrent file: {exc}") from None
    info = top[b"info"]
    meta_version = info.get(b"meta version")
    has_v1 = isinstance(info.get(b"pieces"), bytes)
    has_v2 = meta_version == 2 and isinstance(info.get(b"file tree"), dict)
    if not has_v1 and not has_v2:
        raise TargetParseError("not a valid .torrent file: info has neither 'pieces' (v1) nor a v2 'file tree'")
    meta = _torrent_meta(info, has_v1)
    trackers: list[str] = []
    if isinstance(top.get(b"announce"), bytes):
        trackers.append(top[b"announce"].decode("utf-8", "replace"))
    tiers = top.get(b"announce-list")
    for tier in tiers if isinstance(tiers, list) else []:
        if isinstance(tier, list):
            trackers += [t.decode("utf-8", "replace") for t in tier if isinstance(t, bytes)]
    trackers = list(_tracker_list(trackers, strict=False))
    return TargetSpec(
        kind="torrent",
        infohash_v1=hashlib.sha1(info_raw).digest() if has_v1 else None,
        infohash_v2=hashlib.sha256(info_raw).digest() if has_v2 else None,
        display_name=meta.name, trackers=tuple(trackers), info=info_raw, meta=meta)


def _is_tracker_url(url: str) -> bool:
    try:
        _check_tracker_url(url)
    except TargetParseError:
        return False
    return True


def meta_from_info(info_raw: bytes) -> TorrentMeta:
    """Metadata of a raw info dict (as fetched from peers with ut_metadata)."""
    info = bencode.decode(info_raw)
    if not isinstance(info, dict):
        raise TargetParseError("info is not a dictionary")
    return _torrent_meta(info, isinstance(info.get(b"pieces"), bytes))


def v1_piece_hashes(info_raw: bytes) -> bytes | None:
    """The concatenated SHA-1 piece hashes of a v1 or hybrid info dict (None for v2-only)."""
    info = bencode.decode(info_raw)
    pieces = info.get(b"pieces") if isinstance(info, dict) else None
    return pieces if isinstance(pieces, bytes) else None


def _torrent_meta(info: dict[bytes, Any], has_v1: bool) -> TorrentMeta:
    name = info.get(b"name")
    piece_length = info.get(b"piece length")
    if not isinstance(name, bytes):
        raise TargetParseError("not a valid .torrent file: info has no 'name'")
    if not isinstance(piece_length, int) or piece_length < 16384 or piece_length & (piece_length - 1):
        raise TargetParseError("not a valid .torrent file: 'piece length' must be a power of two ≥ 16 KiB")
    files = _files(info)
    total = sum(size for _, size in files)
    if has_v1 and len(info[b"pieces"]) % 20:
        raise TargetParseError("not a valid .torrent file: 'pieces' is not a multiple of 20 bytes")
    # v2 pieces are aligned to file boundaries, so count them per file
    num_pieces = (len(info[b"pieces"]) // 20 if has_v1
                  else sum(-(-size // piece_length) for _, size in files))
    return TorrentMeta(name=name.decode("utf-8", "replace"), total_size=total, piece_length=piece_length,
                       num_pieces=num_pieces, files=tuple(files))


def _files(info: dict[bytes, Any]) -> list[tuple[str, int]]:
    if isinstance(info.get(b"length"), int):
        return [(info[b"name"].decode("utf-8", "replace"), info[b"length"])]
    if isinstance(info.get(b"files"), list):
        out = []
        for entry in info[b"files"]:
            if not isinstance(entry, dict) or not isinstance(entry.get(b"length"), int):
                raise TargetParseError("not a valid .torrent file: a 'files' entry has no 'length'")
            if b"attr" in entry and b"p" in entry.get(b"attr", b""):
                continue  # BEP 47 padding file
            path = "/".join(p.decode("utf-8", "replace") for p in entry.get(b"path", []) if isinstance(p, bytes))
            out.append((path, entry[b"length"]))
        return out
    if isinstance(info.get(b"file tree"), dict):
        return list(_walk_tree(info[b"file tree"], ""))
    raise TargetParseError("not a valid .torrent file: info has no 'length', 'files' or 'file tree'")


def _walk_tree(tree: dict[bytes, Any], prefix: str) -> Any:
    for key, node in tree.items():
        if key == b"" and isinstance(node, dict):
            yield prefix, int(node.get(b"length", 0))
        elif isinstance(node, dict):
            name = key.decode("utf-8", "replace")
            yield from _walk_tree(node, f"{prefix}/{name}" if prefix else name)
