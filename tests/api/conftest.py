"""An API server on 127.0.0.1 over a fresh schema, and tokens for two rights holders, an ISP and an operator."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from tests.conftest import SettingsFactory
from tracker_watch.api.app import ApiServer
from tracker_watch.api.auth import create_token
from tracker_watch.ledger.db import Database


@dataclass
class Api:
    http: aiohttp.ClientSession
    db: Database
    url: str
    tokens: dict[str, str]

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    async def call(self, who: str, method: str, path: str, **kw: Any) -> tuple[int, Any, aiohttp.ClientResponse]:
        async with self.http.request(method, path, headers={**self.auth(who), **kw.pop("headers", {})}, **kw) as r:
            body = await r.read()
            ctype = r.content_type
            parsed: Any = body
            if ctype in ("application/json", "application/problem+json") and body:
                import json

                parsed = json.loads(body)
            return r.status, parsed, r


async def make_tokens(db: Database) -> dict[str, str]:
    tokens = {}
    async with db.pool.acquire() as conn:
        for key, role, name in (("a", "rightsholder", "Studio A"), ("b", "rightsholder", "Studio B"),
                                ("op", "operator", "ops"), ("isp", "isp", "Kaz Telecom"),
                                ("isp2", "isp", "Other ISP")):
            tokens[key] = (await create_token(conn, role, name, "test"))[1]
    return tokens


@pytest.fixture
async def api(make_settings: SettingsFactory) -> AsyncIterator[Api]:
    settings = make_settings(api={"listen": "127.0.0.1:0", "rate_per_s": 1000.0, "burst": 1000,
                                  "auth_failure_burst": 100_000,  # the fuzzer sends bad tokens by the hundred
                                  "max_body_bytes": 4 * 2**20})
    db = Database(settings)
    await db.start()
    server = ApiServer(db.pool, settings)
    await server.start()
    url = f"http://127.0.0.1:{server.port}"
    async with aiohttp.ClientSession(base_url=url) as http:
        yield Api(http, db, url, await make_tokens(db))
    await server.stop()
    await db.stop()
