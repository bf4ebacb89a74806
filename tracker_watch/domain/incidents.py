"""Folding observations into incidents: one per (target, peer IP, time window). Pure.

Windows are aligned to the Unix epoch (by default whole UTC days), so the fold does not depend on the
order in which observations arrive — a replayed or late batch lands in the same incident.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from tracker_watch.domain.evidence import Grade, Observation

INCIDENT_CHANGE_FIELDS = (
    "incident_id", "target_id", "ip", "window_start", "first_seen", "last_seen", "best_grade", "corrupt", "ports",
    "pieces_verified", "bytes_verified", "observations", "recorded_at",
)


def window_start(at: datetime, window_s: int) -> datetime:
    epoch = int(at.timestamp())
    return datetime.fromtimestamp(epoch - epoch % window_s, tz=UTC)


@dataclass
class IncidentDelta:
    target_id: int
    ip: str
    window_start: datetime
    first_seen: datetime
    last_seen: datetime
    best_grade: Grade = Grade.LISTED
    corrupt: bool = False
    ports: set[int] = field(default_factory=set)
    pieces_verified: set[int] = field(default_factory=set)
    bytes_verified: int = 0
    observations: int = 0

    def add(self, o: Observation) -> None:
        self.first_seen = min(self.first_seen, o.observed_at)
        self.last_seen = max(self.last_seen, o.observed_at)
        # a corrupt peer did connect and handshake; what it sent just proves nothing
        grade = Grade.HANDSHAKE if o.grade is Grade.CORRUPT else o.grade
        if grade.rank > self.best_grade.rank:
            self.best_grade = grade
        self.corrupt = self.corrupt or o.grade is Grade.CORRUPT
        if o.port is not None:
            self.ports.add(o.port)
        if o.grade is Grade.VERIFIED and o.piece_index is not None:
            self.pieces_verified.add(o.piece_index)
            self.bytes_verified += o.piece_bytes or 0
        self.observations += 1


def fold(observations: Iterable[Observation], window_s: int) -> list[IncidentDelta]:
    deltas: dict[tuple[int, str, datetime], IncidentDelta] = {}
    starts: dict[int, datetime] = {}  # a batch spans few windows: build each window's datetime once
    for o in observations:
        epoch = int(o.observed_at.timestamp())
        start = starts.get(epoch - epoch % window_s)
        if start is None:
            start = starts[epoch - epoch % window_s] = window_start(o.observed_at, window_s)
        key = (o.target_id, o.ip, start)
        d = deltas.get(key)
        if d is None:
            d = deltas[key] = IncidentDelta(o.target_id, o.ip, start, o.observed_at, o.observed_at)
        d.add(o)
    return list(deltas.values())
