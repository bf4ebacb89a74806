"""database.read_dsn: the API's reads go to a streaming replica, so they go on while the primary is stopped;
writes go to the primary and, while it is away, get 503 problem+json (never a 500). Tokens are checked on the
primary while it answers: a revocation counts at once, however far the replica lags."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

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


@dataclass
class Served:
    pair: PgPair
    schema: str
    db: Database
    server: ApiServer
    token: str
    token_id: int

    def client(self, **kw: object) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(base_url=f"http://127.0.0.1:{self.server.port}", **kw)  # type: ignore[arg-type]

    async def replica(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.pair.replica_dsn, server_settings={"search_path": self.schema})

    async def console_signed_in(self) -> aiohttp.ClientSession:
        """A console session, signed in while the primary is up (the sign-in is a POST: primary)."""
        console = self.client(cookie_jar=aiohttp.CookieJar(unsafe=True))
        async with console.get("/console/login") as r:
            nonce = re.findall(r'name="csrf" value="([^"]+)"', await r.text())[0]
        async with console.post("/console/login", data={"csrf": nonce, "token": self.token}) as r:
            assert r.status == 200, await r.text()
        return console


@pytest.fixture
async def served(make_settings: SettingsFactory, pair: PgPair, schema: str) -> AsyncIterator[Served]:
    settings = make_settings(database={"dsn": pair.primary_dsn, "read_dsn": pair.replica_dsn, "schema": schema},
                             api={"listen": "127.0.0.1:0"})
    db = Database(settings)
    await db.start()
    server = ApiServer(db.pool, settings, read_pool=db.read_pool)
    await server.start()
    try:
        async with db.pool.acquire() as conn:
            token_id, token = await create_token(conn, "rightsholder", "Studio", "test")
        yield Served(pair, schema, db, server, token, token_id)
    finally:
        await server.stop()
        await db.stop()


async def replicated(replica: asyncpg.Connection, query: str, *args: object) -> None:
    async def there() -> bool:
        try:  # on a busy machine the replica may not even have replayed the schema yet
            return bool(await replica.fetchval(query, *args))
        except asyncpg.UndefinedTableError:
            return False
    await wait_for_async(there, timeout=60)


async def test_reads_come_from_the_replica_while_the_primary_is_stopped(served: Served) -> None:
    async with served.client(headers={"Authorization": f"Bearer {served.token}"}) as http:
        async with http.post("/api/v1/works", json={"title": "Film"}) as r:
            assert r.status == 201, await r.text()
            work = (await r.json())["id"]
        replica = await served.replica()
        try:
            assert await replica.fetchval("SELECT pg_is_in_recovery()")
            await replicated(replica, "SELECT count(*) FROM works WHERE id = $1", work)
        finally:
            await replica.close()
        console = await served.console_signed_in()

        await served.pair.stop_primary()
        async with console.get("/console/targets") as r:  # the console's reads: the replica too
            assert r.status == 200, await r.text()
        await console.close()
        async with http.get("/api/v1/works") as r:  # token check (the primary is away) and query: the replica
            assert r.status == 200, await r.text()
            assert [w["title"] for w in (await r.json())["items"]] == ["Film"]
        async with http.get(f"/api/v1/works/{work}") as r:
            assert r.status == 200
        async with http.post("/api/v1/works", json={"title": "Sequel"}) as r:
            assert r.status == 503
            assert r.content_type == "application/problem+json"
            assert (await r.json())["status"] == 503


async def test_a_revoked_token_is_refused_at_once_however_far_the_replica_lags(served: Served) -> None:
    replica = await served.replica()
    try:
        await replicated(replica, "SELECT count(*) FROM api_tokens WHERE id = $1", served.token_id)
        console = await served.console_signed_in()
        async with served.client(headers={"Authorization": f"Bearer {served.token}"}) as http:
            async with http.get("/api/v1/works") as r:
                assert r.status == 200, await r.text()
            # the replica stops replaying: it keeps answering, with what it had
            await replica.execute("SELECT pg_wal_replay_pause()")
            await wait_for_async(lambda: _paused(replica), timeout=30)
            await served.db.pool.execute("UPDATE api_tokens SET revoked_at = now() WHERE id = $1", served.token_id)
            async with http.get("/api/v1/works") as r:
                assert r.status == 401, await r.text()
            async with console.get("/console/targets", allow_redirects=False) as r:
                assert r.status in (302, 303), await r.text()
                assert "revoked=1" in r.headers["Location"]
            await console.close()
            # the replica had not replayed the revocation: it alone would have let the token in
            assert await replica.fetchval("SELECT revoked_at IS NULL FROM api_tokens WHERE id = $1", served.token_id)
    finally:
        await replica.execute("SELECT pg_wal_replay_resume()")
        await replica.close()


async def _paused(replica: asyncpg.Connection) -> bool:
    return bool(await replica.fetchval("SELECT pg_get_wal_replay_pause_state() = 'paused'"))
