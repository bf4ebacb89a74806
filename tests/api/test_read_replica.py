"""database.read_dsn: the API's reads go to a streaming replica, so they go on while the primary is stopped;
writes go to the primary and, while it is away, get 503 problem+json (never a 500)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import pytest

from tests.conftest import SettingsFactory
from tests.helpers import wait_for_async
from tests.pgpair import PgPair, server_bin
from tracker_watch.api.app import ApiServer
from tracker_watch.api.auth import create_token
from tracker_watch.ledger.db import Database

pytestmark = pytest.mark.skipif(server_bin() is None, reason="needs PostgreSQL's server binaries (pg_basebackup)")


@pytest.fixture
async def pair() -> AsyncIterator[PgPair]:
    p = PgPair()
    try:
        await p.start()
        yield p
    finally:
        await p.stop()


async def test_reads_come_from_the_replica_while_the_primary_is_stopped(make_settings: SettingsFactory,
                                                                       pair: PgPair, schema: str) -> None:
    settings = make_settings(database={"dsn": pair.primary_dsn, "read_dsn": pair.replica_dsn, "schema": schema},
                             api={"listen": "127.0.0.1:0"})
    db = Database(settings)
    await db.start()
    server = ApiServer(db.pool, settings, read_pool=db.read_pool)
    await server.start()
    try:
        async with db.pool.acquire() as conn:
            token = (await create_token(conn, "rightsholder", "Studio", "test"))[1]
        auth = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{server.port}", headers=auth) as http:
            async with http.post("/api/v1/works", json={"title": "Film"}) as r:
                assert r.status == 201, await r.text()
                work = (await r.json())["id"]

            replica = await asyncpg.connect(pair.replica_dsn, server_settings={"search_path": schema})
            try:
                assert await replica.fetchval("SELECT pg_is_in_recovery()")

                async def replicated() -> bool:
                    try:  # on a busy machine the replica may not even have replayed the schema yet
                        return bool(await replica.fetchval("SELECT count(*) FROM works WHERE id = $1", work))
                    except asyncpg.UndefinedTableError:
                        return False
                await wait_for_async(replicated, timeout=60)
            finally:
                await replica.close()

            # a console session, signed in while the primary is up (the sign-in is a POST: primary)
            console = aiohttp.ClientSession(base_url=f"http://127.0.0.1:{server.port}",
                                            cookie_jar=aiohttp.CookieJar(unsafe=True))
            async with console.get("/console/login") as r:
                nonce = re.findall(r'name="csrf" value="([^"]+)"', await r.text())[0]
            async with console.post("/console/login", data={"csrf": nonce, "token": token}) as r:
                assert r.status == 200, await r.text()

            await pair.stop_primary()
            async with console.get("/console/targets") as r:  # the console's reads: the replica too
                assert r.status == 200, await r.text()
            await console.close()
            async with http.get("/api/v1/works") as r:  # token check and query, both on the replica
                assert r.status == 200, await r.text()
                assert [w["title"] for w in (await r.json())["items"]] == ["Film"]
            async with http.get(f"/api/v1/works/{work}") as r:
                assert r.status == 200
            async with http.post("/api/v1/works", json={"title": "Sequel"}) as r:
                assert r.status == 503
                assert r.content_type == "application/problem+json"
                assert (await r.json())["status"] == 503
    finally:
        await server.stop()
        await db.stop()
