"""libtorrent as the authority on what a torrent is. Pure: it parses bytes in memory, no I/O.

We watch with libtorrent, so a .torrent or info dict that libtorrent refuses must be refused at the door
(API, CLI), not discovered later by a node that cannot add it. And metadata that libtorrent accepted from a
swarm must never be refused by a stricter reader of ours (that lost whole alert batches): what a torrent
holds — name, sizes, pieces, files — is read from libtorrent's own parse.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import libtorrent as lt

# Our own limits, well inside libtorrent's defaults (10 MB buffer, 2^21 pieces), so that a target that
# passed registration can always be added by every node.
MAX_TORRENT_BYTES = 8 * 1024 * 1024
MAX_PIECES = 1 << 20
MAX_FILES = 100_000


class TorrentError(ValueError):
    """libtorrent (or one of our limits) refuses this torrent; the message is one line."""


@dataclass(frozen=True)
class TorrentMeta:
    """What the info dictionary says about the content."""

    name: str
    total_size: int
    piece_length: int
    num_pieces: int
    files: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class Checked:
    """A torrent libtorrent accepted: its infohashes as libtorrent computes them, and its contents."""

    infohash_v1: bytes | None
    infohash_v2: bytes | None
    meta: TorrentMeta


def check_torrent(data: bytes) -> Checked:
    """Parse a whole .torrent file with libtorrent; TorrentError if it would not watch it."""
    if len(data) > MAX_TORRENT_BYTES:
        raise TorrentError(f"larger than {MAX_TORRENT_BYTES // (1024 * 1024)} MiB")
    try:
        ti = lt.torrent_info(data)
    except RuntimeError as exc:
        raise TorrentError(_one_line(exc)) from None
    return _checked(ti)


def check_info(info: bytes) -> Checked:
    """Parse a bare info dictionary (stored, or fetched from peers) the same way."""
    return check_torrent(b"d4:info" + info + b"e")


def meta_of_info(info: bytes) -> TorrentMeta:
    return check_info(info).meta


def v1_piece_hashes(info: bytes) -> bytes | None:
    """The concatenated SHA-1 piece hashes of a v1 or hybrid info dict (None for v2-only)."""
    try:
        ti = lt.torrent_info(b"d4:info" + info + b"e")
    except RuntimeError as exc:
        raise TorrentError(_one_line(exc)) from None
    if not ti.info_hashes().has_v1():
        return None
    return b"".join(bytes(ti.hash_for_piece(i)) for i in range(ti.num_pieces()))


def _checked(ti: Any) -> Checked:
    hashes = ti.info_hashes()
    v1 = bytes(hashes.v1.to_bytes()) if hashes.has_v1() else None
    v2 = bytes(hashes.v2.to_bytes()) if hashes.has_v2() else None
    return Checked(v1, v2, _meta(ti))


def _meta(ti: Any) -> TorrentMeta:
    if ti.num_pieces() > MAX_PIECES:
        raise TorrentError(f"{ti.num_pieces()} pieces; at most {MAX_PIECES} are watched")
    if ti.num_files() > MAX_FILES:
        raise TorrentError(f"{ti.num_files()} files; at most {MAX_FILES} are watched")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # files() is the bindings' only file list
        fs = ti.files()
    pad = int(lt.file_storage.flag_pad_file)
    files = tuple((str(fs.file_path(i)), int(fs.file_size(i))) for i in range(fs.num_files())
                  if not int(fs.file_flags(i)) & pad)
    return TorrentMeta(name=str(ti.name()), total_size=sum(size for _, size in files),
                       piece_length=int(ti.piece_length()), num_pieces=int(ti.num_pieces()), files=files)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] or type(exc).__name__
