"""The spool's record of an observation: version 2 (MessagePack) written, version 1 (JSON) still read."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tracker_watch.domain.evidence import (
    Grade,
    Observation,
    Source,
    decode_observation,
    encode_observation,
    encode_observation_v1,
)

opt_bytes = st.none() | st.binary(min_size=20, max_size=20)
opt_int = st.none() | st.integers(0, 2**31 - 1)
hash32 = st.none() | st.binary(min_size=32, max_size=32)
observations = st.builds(
    Observation, target_id=st.integers(1, 2**62), infohash_v1=opt_bytes, infohash_v2=hash32,
    observed_at=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                             timezones=st.just(UTC)),
    ip=st.ip_addresses().map(str), port=st.integers(0, 65535), source=st.sampled_from(Source),
    grade=st.sampled_from(Grade), node=st.text(min_size=1, max_size=10), version=st.text(max_size=10),
    tracker_url=st.none() | st.text(max_size=30), peer_id=opt_bytes, client=st.none() | st.text(max_size=20),
    pieces_advertised=opt_int, num_pieces=opt_int, pieces_verified=st.integers(0, 1000),
    bytes_verified=st.integers(0, 2**40), our_ip=st.none() | st.ip_addresses().map(str), our_port=opt_int,
    piece_index=opt_int, piece_bytes=opt_int, piece_sha1=opt_bytes, piece_sha256=hash32,
    id=st.uuids())


@given(observations)
def test_both_versions_read_back_the_same_observation(o: Observation) -> None:
    assert decode_observation(encode_observation(o)) == o
    assert decode_observation(encode_observation_v1(o)) == o


def test_version_2_is_what_is_written_now() -> None:
    o = Observation(1, b"\x01" * 20, None, datetime.now(UTC), "10.0.0.1", 1, Source.DHT, Grade.LISTED, "n", "v")
    assert encode_observation(o)[:2] == b"\xc1\x02"
    assert encode_observation_v1(o)[:2] == b"[1"


@pytest.mark.parametrize("data", [b"", b"\xc1\x02", b"\xc1\x02\x90", b"\xc1\x02\x81\xa2id\x01", b"[2]", b"{}",
                                  b"\xc1\x03\x80", b"\xff\xfe"])
def test_anything_else_is_refused(data: bytes) -> None:
    with pytest.raises(ValueError, match="observation record"):
        decode_observation(data)


def test_a_changed_type_is_refused() -> None:
    o = Observation(1, None, None, datetime.now(UTC) - timedelta(days=1), "10.0.0.1", 1, Source.DHT, Grade.LISTED,
                    "n", "v", id=uuid.UUID(int=7))
    record = encode_observation(o).replace(b"listed", b"listee")
    with pytest.raises(ValueError, match="observation record"):
        decode_observation(record)


def test_the_version_2_array_order_is_pinned() -> None:
    """Version 2 records are Observation's fields in dataclass order: reordering or adding a field would make
    spooled records unreadable (counted as damage, i.e. lost), so it needs record version 3, not an edit."""
    import dataclasses

    assert tuple(f.name for f in dataclasses.fields(Observation)) == (
        "target_id", "infohash_v1", "infohash_v2", "observed_at", "ip", "port", "source", "grade", "node", "version",
        "tracker_url", "peer_id", "client", "pieces_advertised", "num_pieces", "pieces_verified", "bytes_verified",
        "our_ip", "our_port", "piece_index", "piece_bytes", "piece_sha1", "piece_sha256", "id")
