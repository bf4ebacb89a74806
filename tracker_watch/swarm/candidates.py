"""What the verifier works with: the view of a swarm it needs, and its per (swarm, IP) candidate state."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Protocol


class SwarmView(Protocol):
    """What the verifier needs of a swarm (swarm/swarm.py's Swarm has it once metadata is known)."""

    key: str
    info_hash_v1: bytes | None
    info: bytes | None  # the raw info dict: what a lane (swarm/lanes.py) adds its torrent from

    def piece_hashes(self) -> bytes | None: ...

    def piece_size(self, piece: int) -> int: ...


@dataclass
class VerifyCandidate:
    """One (swarm, IP) the verifier may prove, and what today's budget has spent on it."""

    key: str
    ip: str
    day: date
    ports: dict[int, int] = field(default_factory=dict)  # port → source bits (tracker 1, DHT 2, PEX 4)
    seen_at: float = 0.0
    probes: int = 0
    failures: int = 0
    pieces: int = 0
    bytes: int = 0
    busy: bool = False
    done: bool = False  # verified enough, or proven corrupt, today
    due: float | None = None
