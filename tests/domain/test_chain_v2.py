"""Chain format v2: the fixed binary encoding, and chains that mix v1 and v2 rows."""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tracker_watch.domain import chain, chain_v2
from tracker_watch.domain.evidence import OBSERVATION_FIELDS
from tracker_watch.domain.incidents import INCIDENT_CHANGE_FIELDS

NODE = "n1"
AT = datetime(2026, 11, 30, 10, 0, 0, 123456, tzinfo=UTC)
OBSERVATION: dict[str, Any] = {
    "id": uuid.UUID("00000000-0000-4000-8000-000000000001"), "target_id": 7, "infohash_v1": b"\xcc" * 20,
    "infohash_v2": None, "observed_at": AT, "ip": "10.1.2.3", "port": 6881, "source": "tracker",
    "tracker_url": "http://127.0.0.1/announce", "grade": "verified", "peer_id": b"-LT2110-" + b"x" * 12,
    "client": "libtorrent/2.1.1.0", "pieces_advertised": 32, "num_pieces": 32, "pieces_verified": 1,
    "bytes_verified": 16384, "node": "n1", "version": "tw/test", "our_ip": "127.0.0.2", "our_port": 6881,
    "piece_index": 3, "piece_bytes": 16384, "piece_sha1": b"\x01" * 20, "piece_sha256": b"\x02" * 32,
}
CHANGE: dict[str, Any] = {
    "incident_id": 5, "target_id": 7, "ip": ipaddress.ip_address("2001:db8::1"),
    "window_start": datetime(2026, 11, 30, tzinfo=UTC), "first_seen": AT, "last_seen": AT + timedelta(seconds=1),
    "best_grade": "verified", "corrupt": False, "ports": [6881, 6882], "pieces_verified": [3],
    "bytes_verified": 16384, "observations": 2, "recorded_at": AT + timedelta(seconds=2),
}
# The worked example of docs/chain.md: if this changes, every v2 row ever written stops verifying.
OBSERVATION_V2_SHA256 = "83d398bd2647498b097ff662971e43ad5adecd8c452ccac676a3f926436890f1"


def test_field_lists_are_the_stored_columns() -> None:
    assert chain_v2.NAMES["observation"] == OBSERVATION_FIELDS
    assert chain_v2.NAMES["incident_change"] == INCIDENT_CHANGE_FIELDS


def test_the_encoding_is_as_documented() -> None:
    enc = chain_v2.encode("observation", OBSERVATION)
    assert enc.startswith(b"observation\x00\x01" + OBSERVATION["id"].bytes + b"\x01" + (7).to_bytes(8, "big"))
    assert b"\x01\x04\x0a\x01\x02\x03" in enc  # ip: present, 4 bytes, network order
    micros = (AT - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    assert b"\x01" + micros.to_bytes(8, "big") in enc
    change = chain_v2.encode("incident_change", CHANGE)
    assert b"\x01\x00\x00\x00\x02" + (6881).to_bytes(8, "big") + (6882).to_bytes(8, "big") in change
    assert hashlib.sha256(enc).digest() == chain.content_hash("observation", OBSERVATION, 2)


def test_worked_example() -> None:
    assert chain.content_hash("observation", OBSERVATION, 2).hex() == OBSERVATION_V2_SHA256


def _other(value: Any) -> Any:
    """A different value of the same type (or null for a value, a value for a null)."""
    if value is None:
        return 1
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, str):
        return "10.1.2.4" if value[:1].isdigit() else value + "x"
    if isinstance(value, bytes):
        return value[:-1] + bytes([value[-1] ^ 1])
    if isinstance(value, datetime):
        return value + timedelta(microseconds=1)
    if isinstance(value, uuid.UUID):
        return uuid.UUID(int=value.int + 1)
    if isinstance(value, list):
        return [*value, 9]
    return value + 1  # an address


@pytest.mark.parametrize(("kind", "row"), [("observation", OBSERVATION), ("incident_change", CHANGE)])
def test_changing_any_field_changes_the_hash(kind: str, row: dict[str, Any]) -> None:
    original = chain.content_hash(kind, row, 2)
    for name, value in row.items():
        for changed in (_other(value), None):
            if changed != value:
                assert chain.content_hash(kind, {**row, name: changed}, 2) != original, (name, changed)


def test_adjacent_text_fields_cannot_trade_bytes() -> None:
    a = chain.content_hash("observation", {**OBSERVATION, "node": "n1", "version": "x"}, 2)
    b = chain.content_hash("observation", {**OBSERVATION, "node": "n1x", "version": ""}, 2)
    assert a != b


def test_addresses_hash_alike_as_text_object_or_mapped_form() -> None:
    as_text = chain.content_hash("incident_change", {**CHANGE, "ip": "2001:db8::1"}, 2)
    assert as_text == chain.content_hash("incident_change", CHANGE, 2)


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        chain.content_hash("observation", {**OBSERVATION, "observed_at": AT.replace(tzinfo=None)}, 2)


def _rows(formats: list[int]) -> list[chain.ChainRow]:
    rows, prev = [], chain.GENESIS
    for seq, fmt in enumerate(formats, start=1):
        content = chain.content_hash("observation", {**OBSERVATION, "port": seq}, fmt)
        [link] = chain.extend(NODE, seq - 1, prev, [content], fmt)
        rows.append(chain.ChainRow(NODE, seq, "observation", f"row{seq}", content, link.prev_hash, link.row_hash,
                                   content, fmt))
        prev = link.row_hash
    return rows


def test_a_chain_of_v1_then_v2_rows_verifies() -> None:
    report = chain.verify_chain(NODE, _rows([1, 1, 1, 2, 2, 2]))
    assert report.finding is None
    assert report.rows == 6


@pytest.mark.parametrize("relabel", [1, 2, 3])
def test_a_row_relabelled_to_another_format_is_an_edit(relabel: int) -> None:
    rows = _rows([1, 1, 2, 2])
    k = 1 if relabel != 1 else 3
    rows[k] = dataclasses.replace(rows[k], format=relabel)
    f = chain.verify_chain(NODE, rows).finding
    assert f is not None
    assert (f.problem, f.seq) == ("edited", k + 1)


def test_v1_and_v2_link_differently() -> None:
    assert chain.link_hash(NODE, 1, chain.GENESIS, b"\x01" * 32, 1) != chain.link_hash(NODE, 1, chain.GENESIS,
                                                                                        b"\x01" * 32, 2)


@pytest.mark.parametrize(("kind", "row"), [("observation", OBSERVATION), ("incident_change", CHANGE)])
def test_the_compiled_encoder_is_the_reference_loop(kind: str, row: dict[str, Any]) -> None:
    """The writer's per-kind compiled encoder gives the bytes of the loop the specification describes,
    every field null or not, bytes as bytes or a memoryview, booleans either way."""
    values = [row[name] for name in chain_v2.NAMES[kind]]
    variants = [values, [None] * len(values),
                [memoryview(v) if isinstance(v, bytes) else (not v if isinstance(v, bool) else v) for v in values]]
    for v in variants:
        assert chain_v2.encode_values(kind, v) == chain_v2.encode_values_reference(kind, v)
