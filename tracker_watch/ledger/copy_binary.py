"""Observation rows in PostgreSQL's binary COPY format, encoded while the batch is prepared.

asyncpg's `copy_records_to_table` encodes every record inside the transaction, while PostgreSQL waits for
them: for the observations, 10 % of the writer process's batch CPU, on the transaction's critical path
(1 % left there with this; BENCHMARKS.md, "Ingestion").
Here each row's columns are encoded when the batch is prepared (overlapped with the previous batch's
transaction), all but the chain columns, which are put last and appended in the transaction once the head
is known; the rows then go to PostgreSQL as one buffer (`copy_to_table(format="binary")`).

Binary COPY (PostgreSQL docs, "COPY", binary format): a header, then per row an int16 field count and per
field an int32 length (-1: NULL) and the value in the type's binary send format; an int16 -1 trailer.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from tracker_watch.domain.evidence import OBSERVATION_FIELDS

HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
TRAILER = struct.pack(">h", -1)
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_NULL = struct.pack(">i", -1)
_LEN = struct.Struct(">i")
_I8 = struct.Struct(">iq")
_I4 = struct.Struct(">ii")
_I2 = struct.Struct(">ih")
_INET4 = _LEN.pack(8) + bytes((2, 32, 0, 4))  # length, PGSQL_AF_INET, bits, not cidr, address bytes
_INET6 = _LEN.pack(20) + bytes((3, 128, 0, 16))
_BOOL = (_LEN.pack(1) + b"\x00", _LEN.pack(1) + b"\x01")
_INT4_OID = 23
_ARRAY_EMPTY = struct.pack(">iiii", 12, 0, 0, _INT4_OID)  # length, no dimensions, no nulls, element type int4
_ARRAY_HEAD = struct.Struct(">iiiiii")  # length, 1 dimension, no nulls, element type, size, lower bound 1

# the observation columns' types (migrations 0001, 0002), in OBSERVATION_FIELDS order
TYPES = {"id": "uuid", "target_id": "int8", "infohash_v1": "bytea", "infohash_v2": "bytea",
         "observed_at": "timestamptz", "ip": "inet", "port": "int4", "source": "text", "tracker_url": "text",
         "grade": "text", "peer_id": "bytea", "client": "text", "pieces_advertised": "int4", "num_pieces": "int4",
         "pieces_verified": "int4", "bytes_verified": "int8", "node": "text", "version": "text", "our_ip": "inet",
         "our_port": "int4", "piece_index": "int4", "piece_bytes": "int4", "piece_sha1": "bytea",
         "piece_sha256": "bytea"}
assert tuple(TYPES) == OBSERVATION_FIELDS


def _time(v: datetime) -> bytes:
    if v.tzinfo is None:
        raise ValueError("evidence times must be timezone-aware datetimes")
    return _I8.pack(8, (v - _PG_EPOCH) // _US)


def _inet(v: bytes) -> bytes:
    """An address as the writer's COPY rows hold it: 4 or 16 packed bytes."""
    if len(v) == 4:
        return _INET4 + v
    if len(v) == 16:
        return _INET6 + v
    raise ValueError(f"not a packed address: {v!r}")


_INLINE = {"uuid": "b'\\x00\\x00\\x00\\x10' + {v}.bytes", "int8": "_I8.pack(8, {v})", "int4": "_I4.pack(4, {v})",
           "bytea": "_LEN.pack(len({v})) + {v}", "text": "_LEN.pack(len(_e := {v}.encode())) + _e",
           "timestamptz": "_time({v})", "inet": "_inet({v})"}


def _compile() -> Callable[[Sequence[Any]], bytes]:
    parts = [f"(_NULL if (_x := v[{i}]) is None else {_INLINE[TYPES[name]].format(v='_x')})"
             for i, name in enumerate(OBSERVATION_FIELDS)]
    source = f"def encode(v):\n    return _N + b''.join(({', '.join(parts)},))\n"
    scope: dict[str, Any] = {"_NULL": _NULL, "_LEN": _LEN, "_I8": _I8, "_I4": _I4, "_time": _time, "_inet": _inet,
                             "_N": struct.pack(">h", len(OBSERVATION_FIELDS) + 5)}  # + the five chain columns
    exec(compile(source, "<copy_binary observation>", "exec"), scope)  # our own text, made from TYPES
    fn: Callable[[Sequence[Any]], bytes] = scope["encode"]
    return fn


observation_prefix = _compile()  # a COPY row (observation_row's values) less its chain columns


_STAGE_FIELDS = struct.pack(">h", 11)


def _ints(v: Sequence[int]) -> bytes:
    """An int4[] in array_send's format (ascending, no NULLs, as the incident fold gives them)."""
    if not v:
        return _ARRAY_EMPTY
    return _ARRAY_HEAD.pack(20 + 8 * len(v), 1, 0, _INT4_OID, len(v), 1) + b"".join([_I4.pack(4, i) for i in v])


def stage_buffer(rows: Sequence[Sequence[Any]]) -> bytes:
    """A whole binary COPY of incident staging rows (evidence_prep.stage_records: target_id, packed ip,
    window_start, first_seen, last_seen, best_grade, corrupt, ports, pieces_verified, bytes_verified,
    observations), encoded while the batch is prepared rather than by asyncpg inside the transaction."""
    return b"".join([HEADER, *[b"".join((_STAGE_FIELDS, _I8.pack(8, r[0]), _inet(r[1]), _time(r[2]), _time(r[3]),
                                         _time(r[4]), _LEN.pack(len(_e := r[5].encode())), _e, _BOOL[r[6]],
                                         _ints(r[7]), _ints(r[8]), _I8.pack(8, r[9]), _I4.pack(4, r[10])))
                               for r in rows], TRAILER])


def source(buf: bytes) -> Any:
    """`buf` as a `copy_to_table` source: a memoryview, since bytes would be taken for a file name (asyncpg
    reads any bytes-like object; its type stubs name only paths, files and async iterables)."""
    return memoryview(buf)


def chain_suffix(seq: int, content_hash: bytes, prev_hash: bytes, row_hash: bytes, fmt: int) -> bytes:
    """The chain columns (chain_seq, content_hash, prev_hash, row_hash, chain_format) that end a row."""
    return b"".join((_I8.pack(8, seq), _LEN.pack(len(content_hash)), content_hash, _LEN.pack(len(prev_hash)),
                     prev_hash, _LEN.pack(len(row_hash)), row_hash, _I2.pack(2, fmt)))
