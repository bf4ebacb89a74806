"""The hash chain (pure): canonical encoding, and the walk naming the first tampered row."""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from tracker_watch.domain import chain

NODE = "n1"
fields = st.dictionaries(st.sampled_from(["ip", "port", "grade", "peer_id", "observed_at", "n"]),
                         st.none() | st.integers() | st.text(max_size=20) | st.binary(max_size=20)
                         | st.datetimes(timezones=st.just(UTC)), min_size=1)


@given(fields)
def test_canonical_is_order_independent_json(values: dict[str, object]) -> None:
    reversed_order = dict(reversed(list(values.items())))
    assert chain.canonical("observation", values) == chain.canonical("observation", reversed_order)
    doc = json.loads(chain.canonical("observation", values))
    assert doc["kind"] == "observation"
    assert list(doc) == sorted(doc)


@given(fields, fields)
def test_different_rows_hash_differently(a: dict[str, object], b: dict[str, object]) -> None:
    same = {k: chain.plain(v) for k, v in a.items()} == {k: chain.plain(v) for k, v in b.items()}
    assert (chain.content_hash("observation", a) == chain.content_hash("observation", b)) == same


def test_plain_values() -> None:
    t = datetime(2026, 11, 28, 12, 0, 1, 234000, tzinfo=UTC)
    u = uuid.UUID(int=1)
    assert chain.plain(t) == "2026-11-28T12:00:01.234000Z"
    assert chain.plain(b"\x01\xff") == "01ff"
    assert chain.plain(u) == str(u)
    assert chain.plain([1, None]) == [1, None]


def make_rows(n: int) -> list[chain.ChainRow]:
    contents = [chain.content_hash("observation", {"n": i}) for i in range(n)]
    return [chain.ChainRow(NODE, link.seq, "observation", f"row{link.seq}", link.content_hash, link.prev_hash,
                           link.row_hash, link.content_hash) for link in chain.extend(NODE, 0, chain.GENESIS, contents)]


def renumber(rows: list[chain.ChainRow], start: int, delta: int) -> list[chain.ChainRow]:
    return [dataclasses.replace(r, seq=r.seq + delta) if r.seq >= start else r for r in rows]


@given(st.integers(1, 30))
def test_intact_chain(n: int) -> None:
    report = chain.verify_chain(NODE, make_rows(n))
    assert report.finding is None
    assert report.rows == n


@given(st.integers(2, 30), st.data())
def test_edit(n: int, data: st.DataObject) -> None:
    rows = make_rows(n)
    k = data.draw(st.integers(0, n - 1))
    rows[k] = dataclasses.replace(rows[k], recomputed=chain.content_hash("observation", {"n": -1}))
    f = chain.verify_chain(NODE, rows).finding
    assert f is not None
    assert (f.problem, f.seq) == ("edited", k + 1)


@given(st.integers(3, 30), st.data(), st.booleans())
def test_delete(n: int, data: st.DataObject, renumbered: bool) -> None:
    rows = make_rows(n)
    k = data.draw(st.integers(0, n - 2))  # not the last row: only a checkpoint can tell a cut tail
    del rows[k]
    if renumbered:
        rows = renumber(rows, k + 2, -1)
    f = chain.verify_chain(NODE, rows).finding
    assert f is not None
    assert f.problem == "deleted"
    assert f.seq == k + 1 if renumbered else k + 2


@given(st.integers(2, 30), st.data())
def test_insert(n: int, data: st.DataObject) -> None:
    rows = make_rows(n)
    k = data.draw(st.integers(1, n - 1))  # position (0-based) the forged row takes; rows after shift by one
    prev = rows[k - 1].row_hash
    forged_content = chain.content_hash("observation", {"n": "forged"})
    forged = chain.ChainRow(NODE, k + 1, "observation", "forged", forged_content, prev,
                            chain.link_hash(NODE, k + 1, prev, forged_content), forged_content)
    rows = [*rows[:k], forged, *renumber(rows[k:], 0, 1)]
    f = chain.verify_chain(NODE, rows).finding
    assert f is not None
    assert f.problem == "inserted"
    assert f"position {k + 1}" in f.detail


def test_foreign_row_appended() -> None:
    rows = make_rows(5)
    rows.append(chain.ChainRow(NODE, 6, "observation", "forged", b"\x01" * 32, b"\x02" * 32, b"\x03" * 32,
                               b"\x01" * 32))
    f = chain.verify_chain(NODE, rows).finding
    assert f is not None
    assert (f.problem, f.seq, f.ref) == ("inserted", 6, "forged")


@given(st.integers(3, 30), st.data())
def test_reorder(n: int, data: st.DataObject) -> None:
    rows = make_rows(n)
    a = data.draw(st.integers(0, n - 2))
    b = data.draw(st.integers(a + 1, n - 1))
    rows[a], rows[b] = dataclasses.replace(rows[b], seq=a + 1), dataclasses.replace(rows[a], seq=b + 1)
    f = chain.verify_chain(NODE, rows).finding
    assert f is not None
    assert (f.problem, f.seq) == ("reordered", a + 1)


def test_chunked_walk_equals_whole() -> None:
    rows = make_rows(20)
    state = chain.WalkState()
    assert chain.verify_chain(NODE, rows[:7], state).finding is None
    assert chain.verify_chain(NODE, rows[7:], state).finding is None
    assert state.seq == 20
