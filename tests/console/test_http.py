"""The console over plain HTTP (no browser): cookies, session expiry and revocation, CSRF and origin checks,
role pages, error pages, a 10,000-line bulk list, tokens shown once, acknowledgements recorded once."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from yarl import URL

from tests.api.conftest import make_tokens
from tests.conftest import SettingsFactory
from tests.console.conftest import seed_case
from tracker_watch.api.app import ApiServer
from tracker_watch.console import CONSOLE
from tracker_watch.console.core import SESSIONS
from tracker_watch.console.session import SessionStore
from tracker_watch.ledger.db import Database

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class Console:
    server: ApiServer
    db: Database
    url: str
    tokens: dict[str, str]

    @property
    def sessions(self) -> SessionStore:
        return self.server.app[CONSOLE][SESSIONS]

    def client(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(base_url=self.url, cookie_jar=aiohttp.CookieJar(unsafe=True))

    async def sign_in(self, http: aiohttp.ClientSession, who: str) -> str:
        """Sign in; returns the session's CSRF token."""
        async with http.get("/console/login") as r:
            nonce = CSRF.findall(await r.text())[0]
        async with http.post("/console/login", data={"csrf": nonce, "token": self.tokens[who]}) as r:
            assert r.status == 200, await r.text()
            return str(CSRF.findall(await r.text())[0])


@pytest.fixture
async def console(make_settings: SettingsFactory) -> AsyncIterator[Console]:
    settings = make_settings(api={"listen": "127.0.0.1:0", "rate_per_s": 1000.0, "burst": 1000,
                                  "max_body_bytes": 4 * 2**20})
    db = Database(settings)
    await db.start()
    server = ApiServer(db.pool, settings)
    await server.start()
    yield Console(server, db, f"http://127.0.0.1:{server.port}", await make_tokens(db))
    await server.stop()
    await db.stop()


async def test_cookie_flags_and_secure_behind_a_tls_proxy(console: Console) -> None:
    async with console.client() as http:
        async with http.get("/console/login") as r:
            nonce = CSRF.findall(await r.text())[0]
        async with http.post("/console/login", data={"csrf": nonce, "token": console.tokens["a"]},
                             headers={"X-Forwarded-Proto": "https"}, allow_redirects=False) as r:
            assert r.status == 303
            assert r.headers["Location"] == "/console/targets"
            cookie = next(c for c in r.headers.getall("Set-Cookie") if c.startswith("tw_console="))
    flags = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"httponly", "secure", "samesite", "path"} <= flags
    assert "SameSite=Strict" in cookie
    assert "Path=/console" in cookie


async def test_expired_or_revoked_sessions_go_back_to_sign_in(console: Console) -> None:
    async with console.client() as http:
        await console.sign_in(http, "a")
        sid = next(c.value for c in http.cookie_jar if c.key == "tw_console")
        console.sessions.expire(sid)
        async with http.get("/console/targets?x=1", allow_redirects=False) as r:
            where = URL(r.headers["Location"])
            assert (r.status, where.path, dict(where.query)) == (
                303, "/console/login", {"next": "/console/targets?x=1", "expired": "1"})
        await console.sign_in(http, "a")
        await console.db.pool.execute("UPDATE api_tokens SET revoked_at = now() WHERE name = 'Studio A'")
        async with http.get("/console/targets", allow_redirects=False) as r:
            assert r.headers["Location"] == "/console/login?revoked=1"
        async with http.get("/console/login?revoked=1") as r:
            assert "revoked" in await r.text()


def test_session_store_deadlines() -> None:
    assert SessionStore(max_s=0).get(SessionStore(max_s=0).open("t").sid) is None
    store = SessionStore(max_s=60, idle_s=0)
    assert store.get(store.open("t").sid) is None  # idle too long
    store = SessionStore(limit=2)
    first = store.open("t1")
    store.open("t2")
    store.open("t3")
    assert store.get(first.sid) is None  # the least recently used went first


async def test_forms_need_the_csrf_token_and_our_origin(console: Console) -> None:
    async with console.client() as http:
        async with http.get("/console/login"):
            pass
        async with http.post("/console/login", data={"token": console.tokens["a"]}) as r:  # no token in the form
            assert r.status == 403
            assert "CSRF check failed" in await r.text()
        assert not any(c.key == "tw_console" for c in http.cookie_jar)
        csrf = await console.sign_in(http, "a")
        for data, headers in (({"work": "W", "target": "aa" * 20}, {}),
                              ({"work": "W", "target": "aa" * 20, "csrf": "x" + csrf}, {}),
                              ({"work": "W", "target": "aa" * 20, "csrf": csrf}, {"Origin": "http://evil.example"})):
            async with http.post("/console/targets", data=data, headers=headers) as r:
                assert r.status == 403
                assert r.content_type == "text/html"
        assert await console.db.pool.fetchval("SELECT count(*) FROM targets") == 0
        async with http.post("/console/targets", data={"work": "W", "target": "aa" * 20, "csrf": csrf}) as r:
            assert r.status == 200
        assert await console.db.pool.fetchval("SELECT count(*) FROM targets") == 1
    async with console.client() as http, http.post("/console/targets/1/pause", data={"csrf": csrf}) as r:
        assert r.status == 403  # no session at all
        assert "session has expired or you are signed out" in await r.text()


async def test_each_role_sees_its_pages_only(console: Console) -> None:
    for who, allowed, refused in (("a", ["/console/targets", "/console/strikes", "/console/search?q=x"],
                                   ["/console/ops", "/console/tokens", "/console/audit"]),
                                  ("isp", ["/console/notices"], ["/console/targets", "/console/strikes",
                                                                 "/console/tokens", "/console/search"]),
                                  ("op", ["/console/ops", "/console/tokens", "/console/audit", "/console/targets",
                                          "/console/strikes", "/console/notices"], [])):
        async with console.client() as http:
            await console.sign_in(http, who)
            for path in allowed:
                async with http.get(path) as r:
                    assert r.status == 200, (who, path)
            for path in refused:
                async with http.get(path) as r:
                    assert r.status == 403, (who, path)
                    assert "Not allowed" in await r.text()


async def test_errors_are_pages_not_tracebacks(console: Console) -> None:
    async with console.client() as http:
        for path in ("/", "/console"):
            async with http.get(path, allow_redirects=False) as r:
                assert r.status in (301, 302, 303, 307, 308), path
                assert r.headers["Location"].startswith("/console/")
        csrf = await console.sign_in(http, "a")
        for path, status in (("/console/nope", 404), ("/console/targets/abc", 404), ("/console/targets/999", 404),
                             ("/console/notices/1", 404), ("/console/notices?state=bogus", 400),
                             ("/console/notices?from=yesterday", 400), ("/console/targets/1/evidence?ip=x", 404)):
            async with http.get(path) as r:
                assert r.status == status, path
                assert r.content_type == "text/html"
                assert "Traceback" not in await r.text()
        async with http.post("/console/targets", data={"work": "W", "target": "magnet:?xt=urn:btih:zz",
                                                       "csrf": csrf}) as r:
            assert r.status == 400
            assert 'id="single-error"' in await r.text()


async def test_a_bulk_list_of_ten_thousand_lines(console: Console) -> None:
    lines = "work,target\n" + "".join(f"Series {i % 7},{i + 1:040x}\n" for i in range(10_000))
    async with console.client() as http:
        csrf = await console.sign_in(http, "a")
        form = aiohttp.FormData({"csrf": csrf, "work": ""})
        form.add_field("list_file", lines.encode(), filename="list.csv", content_type="text/csv")
        async with http.post("/console/targets/bulk", data=form) as r:
            assert r.status == 200
            assert "Registered 10000 new target(s) from 10000 line(s)" in await r.text()
        async with http.get("/console/targets") as r:  # a page at a time
            page = await r.text()
        assert page.count('<tr id="target-') == 200
        assert 'href="/console/targets?after=200"' in page
        async with http.get("/console/targets?after=9900") as r:
            assert (await r.text()).count('<tr id="target-') == 100
    assert await console.db.pool.fetchval("SELECT count(*) FROM targets") == 10_000


async def test_a_token_is_shown_once_and_can_be_revoked(console: Console) -> None:
    async with console.client() as http:
        csrf = await console.sign_in(http, "op")
        async with http.post("/console/tokens", data={"csrf": csrf, "role": "isp", "name": "New ISP"}) as r:
            page = await r.text()
        token = re.findall(r'<code class="token">(tw_[^<]+)</code>', page)[0]
        token_id = await console.db.pool.fetchval("SELECT id FROM api_tokens WHERE name = 'New ISP'")
        async with http.get("/console/tokens") as r:
            assert token not in await r.text()
        async with http.post(f"/console/tokens/{token_id}/revoke", data={"csrf": csrf}) as r:
            assert "revoked" in await r.text()
    assert await console.db.pool.fetchval("SELECT revoked_at IS NOT NULL FROM api_tokens WHERE id = $1", token_id)
    assert await console.db.pool.fetchval("SELECT count(*) FROM audit_log WHERE action = 'token.revoke'") == 1


async def test_an_acknowledgement_is_recorded_once(console: Console) -> None:
    case = await seed_case(console.db, "Studio A", "Film A", "10.0.0.5", "SUB-A")
    async with console.client() as http:
        csrf = await console.sign_in(http, "isp")
        for _ in range(2):
            async with http.post(f"/console/notices/{case['notice']}/acknowledge", data={"csrf": csrf}) as r:
                assert r.status == 200
        async with http.get(f"/console/notices/{case['notice']}/xml") as r:
            assert r.content_type == "application/xml"
        for query, shown in (("state=held", True), ("state=delivered", False), ("from=2000-01-01&to=2000-01-02",
                             False), ("from=2000-01-01", True)):
            async with http.get(f"/console/notices?{query}") as r:
                assert (f'id="notice-{case["notice"]}"' in await r.text()) is shown, query
    assert await console.db.pool.fetchval("SELECT count(*) FROM audit_log WHERE action = 'notice.acknowledge'") == 1


async def test_strikes_of_one_work(console: Console) -> None:
    one = await seed_case(console.db, "Studio A", "Film One", "10.0.0.5", "SUB-1")
    await seed_case(console.db, "Studio A", "Film Two", "10.0.0.6", "SUB-2")
    work = await console.db.pool.fetchval("SELECT work_id FROM targets WHERE id = $1", one["target"])
    async with console.client() as http:
        await console.sign_in(http, "a")
        async with http.get(f"/console/targets/{one['target']}") as r:
            assert f'href="/console/strikes?work={work}"' in await r.text()
        async with http.get(f"/console/strikes?work={work}") as r:
            page = await r.text()
    assert "SUB-1" in page
    assert "SUB-2" not in page


async def test_writes_on_anothers_objects_are_refused(console: Console) -> None:
    case = await seed_case(console.db, "Studio A", "Film A", "10.0.0.5", "SUB-A")
    target, strike, notice = case["target"], case["strike"], case["notice"]
    async with console.client() as http:
        csrf = await console.sign_in(http, "b")  # another rights holder, with a valid form token of its own
        for action in ("pause", "resume", "delete"):
            async with http.post(f"/console/targets/{target}/{action}", data={"csrf": csrf}) as r:
                assert r.status == 404, action
        async with http.post(f"/console/strikes/{strike}/void", data={"csrf": csrf, "reason": "x"}) as r:
            assert r.status == 403  # operators only
    async with console.client() as http:
        csrf = await console.sign_in(http, "isp2")  # not the notice's ISP
        async with http.post(f"/console/notices/{notice}/acknowledge", data={"csrf": csrf}) as r:
            assert r.status == 404
    assert await console.db.pool.fetchval("SELECT status FROM targets WHERE id = $1", target) == "active"
    assert await console.db.pool.fetchval("SELECT status FROM strikes WHERE id = $1", strike) == "active"
    assert await console.db.pool.fetchval("SELECT count(*) FROM audit_log WHERE action = 'notice.acknowledge'") == 0


async def test_pause_resume_delete(console: Console) -> None:
    async with console.client() as http:
        csrf = await console.sign_in(http, "a")
        async with http.post("/console/targets", data={"work": "W", "target": "ab" * 20, "csrf": csrf}) as r:
            assert r.url.path == "/console/targets/1"
        for action, status, lands in (("pause", "paused", "/console/targets/1"),
                                      ("resume", "active", "/console/targets/1"),
                                      ("delete", "deleted", "/console/targets")):
            async with http.post(f"/console/targets/1/{action}", data={"csrf": csrf}) as r:
                assert (r.status, r.url.path) == (200, lands)
            assert await console.db.pool.fetchval("SELECT status FROM targets WHERE id = 1") == status
        async with http.get("/console/targets/1") as r:
            assert r.status == 404  # deleted: gone from the console, its evidence kept
    actions = [r["action"] for r in await console.db.pool.fetch(
        "SELECT action FROM audit_log WHERE object = 'target:1' ORDER BY id")]
    assert actions == ["target.register", "target.paused", "target.active", "target.deleted"]


async def test_signing_in_returns_to_the_page_asked_for_and_nowhere_else(console: Console) -> None:
    async with console.client() as http:
        async with http.get("/console/strikes") as r:  # not signed in: the sign-in form remembers the page
            nonce = CSRF.findall(page := await r.text())[0]
        assert 'name="next" value="/console/strikes"' in page
        async with http.post("/console/login", data={"csrf": nonce, "token": console.tokens["a"],
                                                      "next": "/console/strikes"}, allow_redirects=False) as r:
            assert r.headers["Location"] == "/console/strikes"
    for elsewhere in ("//evil.example/x", "https://evil.example/", "/console//evil.example", "/api/v1/targets",
                      "/console/\\evil", "/console/logout"):
        async with console.client() as http:
            async with http.get("/console/login") as r:
                nonce = CSRF.findall(await r.text())[0]
            async with http.post("/console/login", data={"csrf": nonce, "token": console.tokens["a"],
                                                          "next": elsewhere}, allow_redirects=False) as r:
                assert r.headers["Location"] == "/console/targets", elsewhere
