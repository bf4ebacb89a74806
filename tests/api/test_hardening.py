"""What the API tells whom: errors aiohttp answers itself, headers, authentication limits, readiness, and
nothing about another tenant's swarms."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any

import aiohttp
import jsonschema
import pytest

from tests.api.conftest import Api
from tests.api.test_isolation import studio_a_case
from tracker_watch.api.app import ApiServer, create_app
from tracker_watch.api.auth import FailureLimiter, client_key
from tracker_watch.api.keys import OPENAPI
from tracker_watch.config import settings_from_mapping

V1 = "ab" * 20


async def raw(api: Api, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are (no client would send these) and read the answer."""
    host, port = api.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(request)
    await writer.drain()
    head, _, body = (await reader.read()).partition(b"\r\n\r\n")
    writer.close()
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


@pytest.mark.parametrize(("request_bytes", "status"), [
    (b"GET /api/v1/targets?x=" + b"A" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"A" * 20_000 + b"\r\n\r\n", 431),
    (b"G\x01T /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400),
    (b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n", 400),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nExpect: AAAA\r\n\r\n", 417),  # raised early
    (b"GET /nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\nExpect: AAAA\r\n\r\n", 417),
])
async def test_what_aiohttp_refuses_is_problem_json_too(api: Api, request_bytes: bytes, status: int) -> None:
    got, headers, body = await raw(api, request_bytes)
    problem = json.loads(body)
    assert (got, headers["Content-Type"], problem["status"]) == (status, "application/problem+json", status)
    assert b"AAAA" not in body  # nothing of the request comes back
    assert headers["Server"] == "tracker-watch"
    assert headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("framing", [
    b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",  # was 500: the chunk size is not hex
    b"Content-Encoding: gzip\r\nContent-Length: 4\r\n\r\n{}{}",  # was 500: not gzip
])
async def test_a_body_that_breaks_while_read(api: Api, framing: bytes) -> None:
    request = (b"POST /api/v1/targets HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json"
               b"\r\nAuthorization: Bearer " + api.tokens["a"].encode() + b"\r\n" + framing)
    got, headers, _ = await raw(api, request)
    assert (got, headers["Content-Type"]) == (400, "application/problem+json")


async def test_unknown_routes_and_methods(api: Api) -> None:
    status, problem, resp = await api.call("a", "GET", "/api/v1/" + "x" * 5000)
    assert (status, problem["detail"]) == (404, "no such endpoint")
    assert "instance" not in problem  # a long path is not repeated back
    status, problem, resp = await api.call("a", "GET", "/api/v1/targets/bulk")
    assert (status, resp.headers["Allow"]) == (405, "POST")  # not the methods of /targets/{id}
    status, problem, resp = await api.call("a", "GET", "/api/v1/targets/abc")
    assert status == 404


async def test_headers(api: Api) -> None:
    for who, method, path, kw in [("a", "GET", "/api/v1/targets", {}), ("a", "GET", "/api/v1/targets/9", {}),
                                  ("op", "POST", "/api/v1/tokens", {"json": {"role": "isp", "name": "N"}}),
                                  ("a", "GET", "/healthz", {})]:
        _, _, resp = await api.call(who, method, path, **kw)
        assert resp.headers["Cache-Control"] == "no-store", path
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Server"] == "tracker-watch"  # no Python or aiohttp version
    async with api.http.get("/api/v1/targets") as r:  # refused: still no-store
        assert (r.status, r.headers["Cache-Control"]) == (401, "no-store")
    async with api.http.get("/api/v1/openapi.json") as r:
        assert "Cache-Control" not in r.headers
        assert r.headers["X-Content-Type-Options"] == "nosniff"


async def test_the_scheme_is_case_insensitive(api: Api) -> None:
    for scheme in ("bearer", "BEARER", "Bearer"):
        async with api.http.get("/api/v1/targets", headers={"Authorization": f"{scheme} {api.tokens['a']}"}) as r:
            assert r.status == 200, scheme
    for header in ("Basic abc", "Bearer", "Bearer ", "Bearer " + "x" * 5000, "Bearer \u00e9t\u00e9"):
        async with api.http.get("/api/v1/targets", headers={"Authorization": header}) as r:
            assert r.status == 401, header
            assert r.headers["WWW-Authenticate"].startswith("Bearer")


async def test_failed_authentication_is_rate_limited_per_address(api: Api) -> None:
    bad = {"Authorization": "Bearer tw_guess"}
    async with serve(api, auth_failures_per_s=0.001, auth_failure_burst=3) as (http, port):
        statuses = []
        for _ in range(5):
            async with http.get("/api/v1/targets", headers=bad) as r:
                statuses.append(r.status)
        assert statuses == [401, 401, 401, 429, 429]
        async with http.get("/api/v1/targets", headers=api.auth("a")) as r:
            assert r.status == 429  # while the address is locked out, even a right token waits
            assert int(r.headers["Retry-After"]) > 0
            assert r.content_type == "application/problem+json"
        async with http.get("/healthz") as r:
            assert r.status == 200  # unauthenticated routes are not limited
        connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
        async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{port}", connector=connector) as other, \
                other.get("/api/v1/targets", headers=api.auth("a")) as r:
            assert r.status == 200  # another address is not affected


def test_client_keys() -> None:
    assert client_key("2001:db8:1:2:3:4:5:6") == client_key("2001:db8:1:2:ffff::1") == "2001:db8:1:2::/64"
    assert client_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert client_key(None) == "unknown"
    limiter = FailureLimiter(rate=1.0, burst=2, max_clients=4)
    for i in range(10):
        limiter.failed(f"10.0.0.{i}")
    assert len(limiter._buckets) <= 4  # bounded memory under a spray of addresses


async def test_readyz_says_only_ready_or_not(api: Api) -> None:
    async with api.http.get("/readyz") as r:
        assert (r.status, await r.json()) == (200, {"status": "ready"})
    engine = SimpleNamespace(session=None, swarms={"x": 1})
    async with serve(api, engine=engine) as (http, _), http.get("/readyz") as r:
        body = await r.json(content_type=None)
        assert (r.status, body["detail"]) == (503, "not ready")


async def test_live_status_never_tells_of_another_holders_swarm(api: Api) -> None:
    _, a, _ = await api.call("a", "POST", "/api/v1/targets", json={"work": "Film A", "infohash": V1})
    engine = SimpleNamespace(swarms={V1: SimpleNamespace(connected={("10.0.0.1", 1), ("10.0.0.2", 2)})},
                             session=object())
    watchlist = SimpleNamespace(rows={a["id"]: None})  # the daemon runs A's target
    async with serve(api, engine=engine, watchlist=watchlist) as (http, _):
        async with http.post("/api/v1/targets", headers=api.auth("b"),
                             json={"work": "Film B", "infohash": V1}) as r:
            b = await r.json()
        assert (r.status, b["live"]) == (201, {"watched": False, "peers_connected": 0, "last_seen": None})
        async with http.get(f"/api/v1/targets/{a['id']}", headers=api.auth("a")) as r:
            live = (await r.json())["live"]
        assert (live["watched"], live["peers_connected"]) == (True, 2)
        watchlist.rows[b["id"]] = None  # once the daemon runs B's target too, B sees its own swarm
        async with http.get(f"/api/v1/targets/{b['id']}", headers=api.auth("b")) as r:
            assert (await r.json())["live"]["watched"] is True


def test_the_document_is_exact() -> None:
    doc = create_app(None, _settings())[OPENAPI]
    params = {(path, p["name"]): p["schema"] for path, ops in doc["paths"].items() for op in ops.values()
              for p in op.get("parameters", [])}
    for (path, name), schema in params.items():
        if name == "ip":
            assert schema["anyOf"] == [{"format": "ipv4"}, {"format": "ipv6"}], path
        if name == "cursor":
            assert schema["pattern"].startswith("^"), path
    body = doc["paths"]["/api/v1/targets"]["post"]["requestBody"]["content"]
    assert body["application/json"]["schema"]["properties"]["infohash"]["pattern"]
    assert body["multipart/form-data"]["schema"]["additionalProperties"] is False
    notice = doc["paths"]["/api/v1/notices/{id}"]["get"]["responses"]["200"]["content"]
    assert set(notice) == {"application/json", "application/xml"}


async def test_the_json_notice_matches_its_documented_schema(api: Api) -> None:
    case = await studio_a_case(api)
    _, doc, _ = await api.call("a", "GET", "/api/v1/openapi.json")
    schema = doc["paths"]["/api/v1/notices/{id}"]["get"]["responses"]["200"]["content"]["application/json"]
    for fmt in ("", "?format=json"):
        status, notice, resp = await api.call("isp", "GET", f"/api/v1/notices/{case['notice']}{fmt}")
        assert (status, resp.content_type) == (200, "application/json")
        jsonschema.validate(notice, schema["schema"], format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


@asynccontextmanager
async def serve(api: Api, engine: Any = None, watchlist: Any = None,
                **api_settings: Any) -> AsyncIterator[tuple[aiohttp.ClientSession, int]]:
    """A second server on the fixture's database, with its own settings, engine and watchlist."""
    settings = settings_from_mapping({"database": {"schema": api.db.schema},
                                      "api": {"listen": "127.0.0.1:0", **api_settings}})
    server = ApiServer(api.db.pool, settings, engine, watchlist)
    await server.start()
    try:
        async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{server.port}") as http:
            yield http, server.port
    finally:
        await server.stop()


def _settings() -> Any:
    return settings_from_mapping({})


def test_low_level_errors_keep_their_class() -> None:
    from aiohttp.http_exceptions import BadStatusLine, LineTooLong

    from tracker_watch.api.hardening import _classify

    assert _classify(400, LineTooLong(b"x", 8190))[0] == 431
    assert _classify(400, BadStatusLine("x"))[0] == 400
    assert _classify(500, RuntimeError("boom")) == (500, "an internal error occurred; it has been logged")
    assert _classify(504, None) == (504, "Gateway timeout")
