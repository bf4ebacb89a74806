"""Registering and managing targets over HTTP, in every input form."""

from __future__ import annotations

import base64
from pathlib import Path

import aiohttp

from tests.api.conftest import Api
from tracker_watch.demo.swarm import make_content

V1, V2 = "ab" * 20, "cd" * 32


async def test_every_input_form(api: Api, tmp_path: Path) -> None:
    content = make_content(tmp_path, size=200_000, piece_length=16384)
    forms = [{"infohash": V1}, {"infohash": V2.upper()},
             {"magnet": f"magnet:?xt=urn:btih:{'ef' * 20}&dn=Film&tr=udp%3A%2F%2F127.0.0.1%3A6969"},
             {"magnet": f"magnet:?xt=urn:btmh:1220{'12' * 32}"},
             {"torrent_base64": base64.b64encode(content.torrent).decode()}]
    for item in forms:
        status, body, _ = await api.call("a", "POST", "/api/v1/targets", json={"work": "Film", **item})
        assert status == 201, body
        assert body["holder"] == "Studio A"
        assert body["status"] == "active"
    status, again, _ = await api.call("a", "POST", "/api/v1/targets", json={"work": "Film", "infohash": V1})
    assert status == 200
    assert again["infohash_v1"] == V1
    form = aiohttp.FormData()
    form.add_field("work", "Another film")
    form.add_field("torrent", content.torrent, filename="film.torrent", content_type="application/x-bittorrent")
    status, uploaded, _ = await api.call("a", "POST", "/api/v1/targets", data=form)
    assert status == 201, uploaded
    assert uploaded["metadata"]["num_pieces"] == 13
    assert uploaded["infohash_v2"] == content.v2.hex() if content.v2 else True
    status, page, _ = await api.call("a", "GET", "/api/v1/targets?limit=4")
    assert status == 200
    assert len(page["items"]) == 4
    assert page["next_cursor"]
    status, rest, _ = await api.call("a", "GET", f"/api/v1/targets?cursor={page['next_cursor']}")
    assert len(rest["items"]) == 2
    assert rest["next_cursor"] is None


async def test_pause_resume_delete_and_audit(api: Api) -> None:
    _, t, _ = await api.call("a", "POST", "/api/v1/targets", json={"work": "Film", "infohash": V1})
    status, paused, _ = await api.call("a", "POST", f"/api/v1/targets/{t['id']}/pause")
    assert (status, paused["status"]) == (200, "paused")
    status, resumed, _ = await api.call("a", "POST", f"/api/v1/targets/{t['id']}/resume")
    assert resumed["status"] == "active"
    status, _, _ = await api.call("a", "DELETE", f"/api/v1/targets/{t['id']}")
    assert status == 204
    status, _, _ = await api.call("a", "GET", f"/api/v1/targets/{t['id']}")
    assert status == 404
    actions = [r["action"] for r in await api.db.pool.fetch("SELECT action FROM audit_log ORDER BY id")]
    assert actions[-4:] == ["target.register", "target.paused", "target.active", "target.deleted"]


async def test_operator_registers_for_a_named_holder(api: Api) -> None:
    status, body, _ = await api.call("op", "POST", "/api/v1/targets", json={"work": "F", "infohash": V1})
    assert status == 400
    assert "holder" in body["detail"]
    status, body, _ = await api.call("op", "POST", "/api/v1/targets",
                                     json={"work": "F", "holder": "Studio C", "infohash": V1})
    assert (status, body["holder"]) == (201, "Studio C")


async def test_bulk_is_all_or_nothing(api: Api) -> None:
    items = [{"work": "Catalogue", "infohash": f"{i:040x}"} for i in range(1, 11)]
    items[3] = {"work": "Catalogue", "infohash": "a" * 39}
    items[7] = {"work": "Catalogue", "magnet": "magnet:?dn=x"}
    status, body, _ = await api.call("a", "POST", "/api/v1/targets/bulk", json={"targets": items})
    assert status == 400  # the schema's patterns: every malformed field is listed
    assert [e["field"] for e in body["errors"]] == ["targets/3/infohash", "targets/7/magnet"]
    items[3] = {"work": "Catalogue", "magnet": "magnet:?xt=urn:btih:" + "c" * 40 + "&tr=gopher://x"}
    items[7] = {"work": "Catalogue", "magnet": "magnet:?xt=urn:btih:" + "d" * 40 + "&tr=file:///etc"}
    status, body, _ = await api.call("a", "POST", "/api/v1/targets/bulk", json={"targets": items})
    assert status == 422  # well-formed, but not targets
    assert [e["index"] for e in body["errors"]] == [3, 7]
    assert "tracker" in body["errors"][0]["detail"]
    assert await api.db.pool.fetchval("SELECT count(*) FROM targets") == 0
    items[3] = {"work": "Catalogue", "infohash": "b" * 40}
    items[7] = {"work": "Catalogue", "infohash": f"{1:040x}"}  # a duplicate of item 0
    status, body, _ = await api.call("a", "POST", "/api/v1/targets/bulk", json={"targets": items})
    assert status == 201, body
    assert (body["created"], body["existing"]) == (9, 1)
    assert body["target_ids"][7] == body["target_ids"][0]


async def test_bulk_looks_each_work_up_once_and_reports_every_item(api: Api) -> None:
    _, t, _ = await api.call("a", "POST", "/api/v1/targets", json={"work": "Film", "infohash": V1})
    items = [{"work_id": t["work_id"], "infohash": f"{i:040x}"} for i in range(1, 4)]
    items += [{"work_id": 999, "infohash": f"{i:040x}"} for i in range(4, 6)]
    status, body, _ = await api.call("a", "POST", "/api/v1/targets/bulk", json={"targets": items})
    assert status == 422
    assert [(e["index"], "work 999" in e["detail"]) for e in body["errors"]] == [(3, True), (4, True)]
    status, body, _ = await api.call("a", "POST", "/api/v1/targets/bulk", json={"targets": items[:3]})
    assert (status, body["created"]) == (201, 3)
