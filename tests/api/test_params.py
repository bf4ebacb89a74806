"""The parameter helpers on their own: what they accept is exactly what PostgreSQL can take."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

import pytest

from tracker_watch.api.params import (
    EARLIEST,
    ID_CURSOR,
    LATEST,
    TIME_CURSOR,
    ascii_int,
    id_cursor,
    parse_time,
    time_cursor,
)


@pytest.mark.parametrize(("text", "value"), [
    ("1", 1), ("0042", 42), (str(2**62), 2**62), (str(2**62 + 1), None), ("0", None), ("\u00b2", None),
    ("\u0663", None), ("\uff11", None), ("9" * 5000, None), ("", None), ("-1", None), ("+1", None), (" 1", None),
    ("1\n", None), ("1_000", None),
])
def test_ascii_int(text: str, value: int | None) -> None:
    assert ascii_int(text, 1, 2**62) == value


@pytest.mark.parametrize(("text", "value"), [
    ("2026-01-31T12:00:00Z", datetime(2026, 1, 31, 12, tzinfo=UTC)),
    ("2026-01-31t12:00:00+01:00", datetime(2026, 1, 31, 11, tzinfo=UTC)),
    ("2026-01-31", datetime(2026, 1, 31, tzinfo=UTC)),
    ("2016-12-31T23:59:60Z", datetime(2016, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),  # a leap second
    ("0001-01-01T00:00:00+01:00", EARLIEST),  # before year 1 in UTC: the earliest instant
    ("9999-12-31T23:59:59-01:00", LATEST),
    ("10000-01-01T00:00:00Z", None), ("\u0662\u0660\u0662\u0666-01-01", None), ("yesterday", None),
    ("2026-01-01T00:00:00Z" + " " * 100, None),
])
def test_parse_time(text: str, value: datetime | None) -> None:
    assert parse_time(text) == value


def test_cursors_are_of_their_documented_shape() -> None:
    assert re.fullmatch(ID_CURSOR["pattern"], id_cursor(2**62))
    at = datetime(2026, 1, 31, 12, 0, 0, 123456, tzinfo=UTC)
    assert re.fullmatch(TIME_CURSOR["pattern"], time_cursor(at, uuid.uuid4()))
    assert re.fullmatch(TIME_CURSOR["pattern"], time_cursor(LATEST, uuid.uuid4()))
