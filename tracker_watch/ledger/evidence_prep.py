"""Preparing a batch of observations for its transaction (ledger/evidence.py): everything that does not need
the database — distinct ids, content hashes in the chain format, the incident fold as binary staging rows, the
observations' COPY rows. Pure CPU, no I/O: the writer runs it itself or in its preparer process
(evidence/preparer.py), and both must give the same bytes."""

from __future__ import annotations

import ipaddress
import socket
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any

from tracker_watch.domain import chain, chain_v2
from tracker_watch.domain.evidence import OBSERVATION_FIELDS, Observation
from tracker_watch.domain.incidents import IncidentDelta, fold
from tracker_watch.ledger import copy_binary

FORMAT = chain_v2.FORMAT  # the chain format new rows are written in

NO_TIME = datetime.fromtimestamp(0, UTC)  # the bounds of an empty batch (never written: nothing to look up)
observation_values = attrgetter(*OBSERVATION_FIELDS)  # in chain_v2's field order (a test holds them equal)
_IP, _OUR_IP = OBSERVATION_FIELDS.index("ip"), OBSERVATION_FIELDS.index("our_ip")


def packed(ip: Any) -> bytes | None:
    """An address as 4 or 16 bytes, for COPY: asyncpg reads those without parsing text (~3 µs an address)."""
    if ip is None or isinstance(ip, bytes):
        return ip
    if not isinstance(ip, str):
        return bytes(ip.packed)
    try:
        return socket.inet_pton(socket.AF_INET6 if ":" in ip else socket.AF_INET, ip)
    except OSError:
        return ipaddress.ip_address(ip).packed


def observation_row(v: tuple[Any, ...]) -> tuple[Any, ...]:
    """An observation's columns for COPY, less the chain columns."""
    return (*v[:_IP], packed(v[_IP]), *v[_IP + 1:_OUR_IP], packed(v[_OUR_IP]), *v[_OUR_IP + 1:])


def stage_records(deltas: list[IncidentDelta]) -> list[tuple[Any, ...]]:
    return [(d.target_id, packed(d.ip), d.window_start, d.first_seen, d.last_seen, d.best_grade.value, d.corrupt,
             sorted(d.ports), sorted(d.pieces_verified), d.bytes_verified, d.observations) for d in deltas]


@dataclass
class Prepared:
    """A batch made ready for its transaction: all the work that does not depend on the database (content
    hashes, the incident fold, COPY rows). Chain positions and links are given in the transaction.
    Made in this process (`EvidenceWriter.prepare`) or in the writer's preparer process (preparer.py), which
    sends it as plain values: hence ids, bounds and counts rather than the observations themselves.
    (Preparing the next batch in a worker thread while one is in PostgreSQL was measured and dropped: the
    GIL handover cost the event loop more than the overlap gained — BENCHMARKS.md, "Ingestion".)"""

    ids: list[Any]  # distinct observation ids, in batch order (uuid.UUID, or asyncpg's UUID from the preparer)
    first_at: datetime  # the earliest and latest observed_at: the replay check's partition bounds
    last_at: datetime
    counts: Counter[tuple[str, str]]  # observations by (grade, source), for the metrics
    contents: list[bytes]
    stage: bytes  # the incident staging rows as one binary COPY (copy_binary.stage_buffer)
    staged: int  # how many: each is one incident upserted (the fold gives each key once)
    fmt: int
    prefixes: list[bytes]  # each row in binary COPY format, less its chain columns (copy_binary.py)
    # the batch's observations again (distinct ids, batch order): only a replayed batch needs them, to fold
    # what is new of it (the preparer's batches decode their records again then)
    again: Callable[[], Sequence[Observation]]


def distinct(batch: Sequence[Observation]) -> list[Observation]:
    """The batch with each id once (its last occurrence's values at its first's place, as a dict keeps)."""
    return list({o.id: o for o in batch}.values())


def staged(observations: Sequence[Observation], window_s: int) -> tuple[bytes, int]:
    """The batch's incident fold as a binary COPY of staging rows, and their count."""
    records = stage_records(fold(observations, window_s))
    return copy_binary.stage_buffer(records), len(records)


def content_hashes(kind: str, rows: list[tuple[Any, ...]], fmt: int = FORMAT) -> list[bytes]:
    """Content hashes of rows given as values in the kind's field order, in chain format `fmt`."""
    if fmt == chain_v2.FORMAT:
        return [chain_v2.content_hash_values(kind, v) for v in rows]
    names = chain_v2.NAMES[kind]
    return [chain.content_hash(kind, dict(zip(names, v, strict=True)), fmt) for v in rows]


def prepare(batch: Sequence[Observation], window_s: int, fmt: int = FORMAT) -> Prepared:
    """The database-independent part of writing `batch` (the writer's, or its preparer process's); pure CPU."""
    new = distinct(batch)
    return prepared_from(new, [observation_values(o) for o in new], *staged(new, window_s), fmt)


def prepared_from(new: list[Observation], values: list[tuple[Any, ...]], stage: bytes, n: int, fmt: int) -> Prepared:
    prefix = copy_binary.observation_prefix
    at = [o.observed_at for o in new]
    return Prepared([o.id for o in new], min(at, default=NO_TIME), max(at, default=NO_TIME),
                    Counter((o.grade.value, o.source.value) for o in new),
                    content_hashes("observation", values, fmt), stage, n, fmt,
                    [prefix(observation_row(v)) for v in values], lambda: new)
