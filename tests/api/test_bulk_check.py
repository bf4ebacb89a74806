"""The bulk request's quick schema check agrees exactly with the full validator, and work ids are
resolved per tenant in one query."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.api.conftest import Api
from tracker_watch.api import schemas as s
from tracker_watch.api.bulk import check_bulk
from tracker_watch.api.common import validate
from tracker_watch.api.errors import Problem

VALUES: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from(["a" * 40, "A" * 64, "a" * 39, "g" * 40, " ", "", "\x1c", "Film", "x" * 501, "\u00a0t",
                     "magnet:?xt=urn:btih:" + "c" * 40, "magnet:?dn=x", "magnet:?xt=urn:btih:" + "C" * 32,
                     "QUJD", "QUJ=", 1, 0, 2**62, 2**62 + 1, True, 1.0, None, [], {}]),
    st.text(max_size=8))
NEAR_VALID = st.fixed_dictionaries(
    {"work": st.sampled_from(["Film", " x ", "\x1c", "\u3000", "a" * 500, "a" * 501, "", "a\x00"])},
    optional={"infohash": st.sampled_from(["a" * 40, "B" * 64, "a" * 39, "a" * 41]),
              "magnet": st.sampled_from(["magnet:?xt=urn:btih:" + "c" * 40 + "&tr=x", "MAGNET:?xt=urn:btih:" + "C" * 32,
                                         "magnet:?xt=urn:btmh:1220" + "d" * 64, "magnet:?xt=urn:btih:" + "c" * 39]),
              "work_id": st.sampled_from([1, 2**62, 0, 2**62 + 1, True, 1.0]),
              "holder": st.sampled_from(["H", " ", "h" * 200, "h" * 201])})
KEYS = st.sampled_from(["work", "work_id", "holder", "infohash", "magnet", "torrent_base64", "other"])


def outcome(check: Any, doc: Any) -> tuple[int, Any]:
    try:
        check(doc)
    except Problem as p:
        return p.status, (p.detail, p.extra)
    return 0, None


@settings(max_examples=400, deadline=None)
@given(st.lists(st.dictionaries(KEYS, VALUES, max_size=4), min_size=0, max_size=4))
def test_quick_check_agrees_with_the_validator(items: list[dict[str, Any]]) -> None:
    doc = {"targets": items}
    assert outcome(check_bulk, doc) == outcome(lambda d: validate(d, s.BULK), doc)


@settings(max_examples=400, deadline=None)
@given(st.lists(NEAR_VALID, min_size=1, max_size=3))
def test_quick_check_agrees_on_nearly_valid_items(items: list[dict[str, Any]]) -> None:
    doc = {"targets": items}
    assert outcome(check_bulk, doc) == outcome(lambda d: validate(d, s.BULK), doc)


@pytest.mark.parametrize("doc", [[], {"targets": []}, {"targets": {}}, {"targets": [{}], "x": 1},
                                 {"targets": [{"work": "W", "infohash": "a" * 40}] * 10_001}])
def test_envelope_errors_are_the_validators(doc: Any) -> None:
    assert outcome(check_bulk, doc) == outcome(lambda d: validate(d, s.BULK), doc)
    assert outcome(check_bulk, doc)[0] == 400


async def test_work_ids_of_another_holder_are_404_per_item(api: Api) -> None:
    ids = {}
    for who in ("a", "b"):
        for n in range(3):
            _, work, _ = await api.call(who, "POST", "/api/v1/works", json={"title": f"{who} {n}"})
            ids[(who, n)] = work["id"]
    items = [{"work_id": ids[("a", i % 3)], "infohash": f"{i + 1:040x}"} for i in range(3000)]
    items[1234] = {"work_id": ids[("b", 1)], "infohash": "e" * 40}
    status, body, _ = await api.call("a", "POST", "/api/v1/targets/bulk", json={"targets": items})
    assert status == 422
    assert body["errors"] == [{"index": 1234, "detail": f"work {ids[('b', 1)]} does not exist or is not visible "
                                                        "to this token"}]
    del items[1234]
    status, body, _ = await api.call("a", "POST", "/api/v1/targets/bulk", json={"targets": items})
    assert (status, body["created"]) == (201, 2999)
    assert await api.db.pool.fetchval("SELECT count(*) FROM targets t JOIN works w ON w.id = t.work_id "
                                      "WHERE w.holder_id <> (SELECT holder_id FROM works WHERE id = $1)",
                                      ids[("a", 0)]) == 0
