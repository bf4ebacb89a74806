"""Bad input gets a precise problem+json 4xx and writes nothing; limits are enforced."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.api.conftest import Api
from tracker_watch.api.app import create_app
from tracker_watch.api.auth import RateLimiter
from tracker_watch.api.keys import LIMITER
from tracker_watch.config import settings_from_mapping


@pytest.mark.parametrize(("body", "ctype", "status", "detail"), [
    (b"{", "application/json", 400, "malformed JSON at line 1, column 2"),
    (b'{"work": "F", "infohash": 5}', "application/json", 400, "infohash: 5 is not of type 'string'"),
    (b'{"work": "F", "infohash": "' + b"a" * 40 + b'", "colour": "red"}', "application/json", 400, "colour"),
    (b'{"work": "F", "infohash": "' + b"a" * 39 + b'"}', "application/json", 400, "40 (v1) or 64 (v2) hex digits"),
    (b'{"work": "F", "magnet": "magnet:?dn=film"}', "application/json", 400, "expected a magnet link"),
    (b'{"work": "F", "torrent_base64": "ZDQ6aW5mbw=="}', "application/json", 400, "not a valid .torrent file"),
    (b'{"work": "F", "torrent_base64": "%%%"}', "application/json", 400, "base64-encoded"),
    (b'{"work": "F", "infohash": "' + b"a" * 40 + b'", "magnet": "magnet:?"}', "application/json", 400,
     "exactly one of"),
    (b'[]', "application/json", 400, "is not of type 'object'"),
    (b"infohash=aa", "text/plain", 415, "application/json"),
])
async def test_bad_requests(api: Api, body: bytes, ctype: str, status: int, detail: str) -> None:
    got, problem, resp = await api.call("a", "POST", "/api/v1/targets", data=body, headers={"Content-Type": ctype})
    assert got == status
    assert resp.content_type == "application/problem+json"
    assert detail in problem["detail"]
    assert problem["status"] == status
    assert await api.db.pool.fetchval("SELECT count(*) FROM targets") == 0


async def test_oversized_body_and_unknown_routes(api: Api) -> None:
    status, problem, _ = await api.call("a", "POST", "/api/v1/targets/bulk", data=b"x" * (5 * 2**20),
                                        headers={"Content-Type": "application/json"})
    assert status == 413
    assert "api.max_body_bytes" in problem["detail"]
    status, problem, _ = await api.call("a", "GET", "/api/v1/nothing")
    assert (status, problem["title"]) == (404, "Not found")
    status, problem, resp = await api.call("a", "PUT", "/api/v1/targets")
    assert status == 405
    assert "GET" in resp.headers["Allow"]
    for bad in ("/api/v1/targets/abc", "/api/v1/targets/0", "/api/v1/targets/99999999999999999999999"):
        assert (await api.call("a", "GET", bad))[0] == 404
    for bad in ("/api/v1/observations?since=yesterday", "/api/v1/observations?ip=1.2.3", "/api/v1/targets?limit=0",
                "/api/v1/incidents?cursor=%%%", "/api/v1/targets?status=gone"):
        status, problem, _ = await api.call("a", "GET", bad)
        assert status == 400, bad
        assert "query parameter" in problem["detail"]


async def test_authentication(api: Api) -> None:
    async with api.http.get("/api/v1/targets") as r:
        assert r.status == 401
        assert (await r.json(content_type=None))["detail"].startswith("send the API token")
    async with api.http.get("/api/v1/targets", headers={"Authorization": "Bearer tw_nope"}) as r:
        assert r.status == 401
    async with api.http.get("/healthz") as r:
        assert r.status == 200
    async with api.http.get("/readyz") as r:
        assert (r.status, await r.json()) == (200, {"status": "ready"})


async def test_rate_limit(api: Api) -> None:
    app = create_app(api.db.pool, settings_from_mapping({"database": {"schema": api.db.schema}}))
    app[LIMITER] = RateLimiter(rate=1.0, burst=3)
    async with TestClient(TestServer(app)) as client:
        statuses, retry = [], None
        for _ in range(5):
            async with client.get("/api/v1/targets", headers=api.auth("a")) as r:
                statuses.append(r.status)
                retry = r.headers.get("Retry-After")
        assert statuses == [200, 200, 200, 429, 429]
        assert retry == "1"
        async with client.get("/api/v1/targets", headers=api.auth("b")) as r:
            assert r.status == 200  # the bucket is per token
