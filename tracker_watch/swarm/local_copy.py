"""The node's local copy of what it watches: its leases and the targets it runs, for a start without the database.

Layout under the copy's directory (`<state_dir>/local-copy`):

* `targets/<id>` — one target as the watchlist runs it (infohashes, trackers, stored info dict, revision),
  rewritten only when its revision changes, so a node with 10,000 targets writes what changed, not all;
* `leases` — the target ids this node held at its last lease heartbeat and the revision of each target
  file, written last: a crash between the two leaves the previous `leases` naming files that still verify.

Every file is `TWc1 <sha256 of the body, hex>\\n<body: JSON>`, written to a temporary name and renamed
over the old one, so a reader sees the old file or the new one, never half of either; `leases` is fsynced
(file and directory), target files are not (a power cut may tear one: it fails its checksum). A file that
is missing, unreadable or fails its checksum is reported and left out; a damaged `leases` means starting
with nothing. Loading never raises.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tracker_watch.swarm.targets import WatchedTarget

MAGIC = b"TWc1"


@dataclass
class Loaded:
    owned: frozenset[int] = frozenset()
    targets: dict[int, WatchedTarget] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # what was missing or damaged, for the log


def _encode(body: dict[str, Any]) -> bytes:
    data = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return MAGIC + b" " + hashlib.sha256(data).hexdigest().encode() + b"\n" + data


def _decode(raw: bytes) -> dict[str, Any]:
    head, _, data = raw.partition(b"\n")
    magic, _, digest = head.partition(b" ")
    if magic != MAGIC or hashlib.sha256(data).hexdigest().encode() != digest:
        raise ValueError("checksum mismatch")
    body = json.loads(data)
    if not isinstance(body, dict):
        raise ValueError("not an object")
    return body


def _hex(value: bytes | None) -> str | None:
    return value.hex() if value is not None else None


def _unhex(value: str | None) -> bytes | None:
    return bytes.fromhex(value) if value is not None else None


def target_to_json(t: WatchedTarget) -> dict[str, Any]:
    return {"id": t.id, "infohash_v1": _hex(t.infohash_v1), "infohash_v2": _hex(t.infohash_v2),
            "trackers": list(t.trackers), "status": t.status, "revision": t.revision, "peer_hints": list(t.peer_hints),
            "info": base64.b64encode(t.info).decode() if t.info is not None else None}


def target_from_json(d: dict[str, Any]) -> WatchedTarget:
    info = d["info"]
    return WatchedTarget(id=int(d["id"]), infohash_v1=_unhex(d["infohash_v1"]), infohash_v2=_unhex(d["infohash_v2"]),
                         trackers=tuple(str(t) for t in d["trackers"]), status=str(d["status"]),
                         info=base64.b64decode(info, validate=True) if info is not None else None,
                         revision=int(d["revision"]),
                         peer_hints=tuple(str(h) for h in d.get("peer_hints", ())))  # absent in older copies


class LocalCopy:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._written: dict[int, int] = {}  # target id → revision on disk (learnt from load or save)

    @property
    def _targets(self) -> Path:
        return self.directory / "targets"

    def save(self, owned: frozenset[int], targets: Mapping[int, WatchedTarget]) -> None:
        """Write what changed since the last save, then the lease list; files of targets gone are removed."""
        self._targets.mkdir(parents=True, exist_ok=True)
        for t in targets.values():
            if self._written.get(t.id) != t.revision:
                _write_atomic(self._targets / str(t.id), _encode(target_to_json(t)), durable=False)
                self._written[t.id] = t.revision
        revisions = {str(t.id): t.revision for t in targets.values()}
        _write_atomic(self.directory / "leases", _encode({"owned": sorted(owned), "targets": revisions}))
        for gone in set(self._written) - set(targets):
            with contextlib.suppress(FileNotFoundError):
                (self._targets / str(gone)).unlink()
            del self._written[gone]

    def load(self) -> Loaded:
        out = Loaded()
        try:
            index = _decode((self.directory / "leases").read_bytes())
            owned = frozenset(int(i) for i in index["owned"])
            revisions = {int(k): int(v) for k, v in dict(index["targets"]).items()}
        except FileNotFoundError:
            out.problems.append("no local copy")
            return out
        except (OSError, ValueError, KeyError, TypeError) as exc:
            out.problems.append(f"leases: {type(exc).__name__}: {exc}"[:300])
            return out
        out.owned = owned
        for target_id, revision in revisions.items():
            try:
                target = target_from_json(_decode((self._targets / str(target_id)).read_bytes()))
                if target.id != target_id or target.revision != revision:
                    raise ValueError("does not match the lease list")
            except (OSError, ValueError, KeyError, TypeError) as exc:
                out.problems.append(f"target {target_id}: {type(exc).__name__}: {exc}"[:300])
                continue
            out.targets[target_id] = target
            self._written[target_id] = revision
        return out


def _write_atomic(path: Path, data: bytes, durable: bool = True) -> None:
    """Write, rename over. Target files skip the fsync (one per file made a first save of 10,000 targets take
    70 s here): after a power cut a torn one fails its checksum and only that target is left out."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if not durable:
        return
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
