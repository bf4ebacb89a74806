"""What the swarm layer knows of a target, and the interface through which targets reach it.

The engine knows no database: the daemon hands the watchlist a `TargetSource` — the ledger's target
store while PostgreSQL answers, the node's local copy while it does not (`tracker_watch/node_targets.py`),
just as evidence leaves the swarm layer through the collector.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class WatchedTarget:
    """One registered target as the watchlist runs it (several may share a swarm)."""

    id: int
    infohash_v1: bytes | None
    infohash_v2: bytes | None
    trackers: tuple[str, ...]
    status: str
    info: bytes | None  # the stored info dict (bencoded), when known: the swarm starts without fetching it
    revision: int
    peer_hints: tuple[str, ...] = ()  # magnet x.pe addresses ("ip:port", "[ip]:port"), dialled when the swarm starts

    @property
    def key(self) -> str:
        return (self.infohash_v1 or self.infohash_v2 or b"").hex()


class TargetSource(Protocol):
    """Where the watchlist reads targets from and records the ones it could not watch."""

    async def get(self, target_id: int) -> WatchedTarget | None: ...

    async def get_many(self, ids: set[int]) -> Sequence[WatchedTarget]: ...

    async def changed_since(self, revision: int, ids: set[int] | None = None) -> Sequence[WatchedTarget]:
        """Targets whose revision grew past `revision` (only those in `ids`, when given)."""
        ...

    async def active_ids(self) -> dict[int, int]:
        """{target id: revision} of every active target."""
        ...

    async def mark_error(self, target_ids: list[int], reason: str, actor: str) -> list[int]:
        """Set targets aside as unwatchable; raises while that cannot be recorded (retried at the next poll)."""
        ...
