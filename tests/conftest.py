"""Shared fixtures: a real PostgreSQL (TRACKER_WATCH_TEST_DSN, else an embedded server), a clean schema
per test (a migrated one reused where that is all a test needs, tests/schemas.py), settings for a monitor
on 127.0.0.2, and a local swarm of libtorrent peers on 127.0.0.x. The real-process fixtures (`conn`,
`proxy`) come from tests/daemons.py."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Generator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web

from tests.schemas import SchemaPool, drop_stale_schemas, schema_name
from tracker_watch.config import Settings
from tracker_watch.demo.run import demo_settings
from tracker_watch.demo.swarm import LocalSwarm
from tracker_watch.ledger.db import Database, EmbeddedPostgres

pytest_plugins = ["tests.daemons"]

SettingsFactory = Callable[..., Settings]
Receiver = tuple[str, list[dict[str, Any]], Callable[[int], None]]


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    """A temporary directory of this test process's own, for what the code under test makes with `tempfile`
    (lane payloads, swarms, embedded servers) and for the processes it starts (TMPDIR): a test that checks
    it left nothing behind sees only its own process's files, not those of a parallel worker or another run
    on the machine. (pytest's tmp_path stays where it was, and is kept as usual.)"""
    factory = getattr(config, "_tmp_path_factory", None)
    if factory is not None:
        factory.getbasetemp()  # fixed now, before tempfile looks elsewhere
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    private = Path(tempfile.mkdtemp(prefix=f"tw-tests-{worker}-"))
    private.chmod(0o1777)  # as /tmp: the read-replica test's servers run as the postgres user in here
    config.stash[_TMPDIR] = (private, os.environ.get("TMPDIR"))
    os.environ["TMPDIR"] = str(private)
    tempfile.tempdir = str(private)


def pytest_unconfigure(config: pytest.Config) -> None:
    private, before = config.stash.get(_TMPDIR, (None, None))
    if private is None:
        return
    tempfile.tempdir = None
    if before is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = before
    shutil.rmtree(private, ignore_errors=True)


_TMPDIR = pytest.StashKey[tuple[Path, str | None]]()


@pytest.fixture(scope="session")
async def pg_dsn() -> AsyncIterator[str]:
    """The server under test: the CI server when TRACKER_WATCH_TEST_DSN is set, else an embedded one."""
    if dsn := os.environ.get("TRACKER_WATCH_TEST_DSN"):
        conn = await asyncpg.connect(dsn)
        try:
            await drop_stale_schemas(conn)  # what killed sessions left on the shared server
        finally:
            await conn.close()
        yield dsn
        return
    server = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="tw-test-pg-")) / "pgdata")
    yield await server.start()
    await server.stop()


@pytest.fixture(scope="session")
async def schema_pool(pg_dsn: str) -> AsyncIterator[SchemaPool]:
    """Migrated schemas, reused from test to test (tests/schemas.py): one pool per process."""
    pool = SchemaPool(pg_dsn)
    yield pool
    await pool.close()


def _wants_a_migrated_schema(request: pytest.FixtureRequest) -> bool:
    """A test that builds monitor settings (make_settings, db, api, …) and never names the schema itself only
    needs a migrated ledger: it gets one from the pool. A test that names `schema` (it migrates, upgrades, or
    looks at the tables from outside, their counters included) gets a new name, as before."""
    if "make_settings" not in request.fixturenames or request.node.get_closest_marker("fresh_schema"):
        return False
    direct = getattr(getattr(request.node, "_fixtureinfo", None), "argnames", ("schema",))
    return "schema" not in direct


@pytest.fixture
async def schema(pg_dsn: str, schema_pool: SchemaPool, request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A schema of its own for each test, dropped afterwards (or, migrated and reused, see above)."""
    if _wants_a_migrated_schema(request):
        name = await schema_pool.take()
        yield name
        await schema_pool.give_back(name, reuse=not _failed(request.node))
        return
    name = schema_name()
    yield name
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    finally:
        await conn.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item,
                              call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        item.stash[_FAILED] = True
    return report


_FAILED = pytest.StashKey[bool]()


def _failed(item: pytest.Item) -> bool:
    return item.stash.get(_FAILED, False)


@pytest.fixture
def make_settings(tmp_path: Path, pg_dsn: str, schema: str) -> SettingsFactory:
    """Monitor settings for loopback tests; keyword arguments replace whole sections' keys."""
    def make(**overrides: dict[str, Any]) -> Settings:
        base = demo_settings(tmp_path / "state", dsn=pg_dsn, schema=schema)
        if not overrides:
            return base
        from dataclasses import asdict

        from tracker_watch.config import settings_from_mapping

        raw = {k: {kk: (str(vv) if isinstance(vv, Path) else vv) for kk, vv in v.items()}
               for k, v in asdict(base).items()}
        for section, values in overrides.items():
            raw[section].update(values)
        return settings_from_mapping(raw)
    return make


@pytest.fixture
async def db(make_settings: SettingsFactory) -> AsyncIterator[Database]:
    database = Database(make_settings())
    await database.start()
    yield database
    await database.stop()


@pytest.fixture(scope="module")
async def local_swarm() -> AsyncIterator[LocalSwarm]:
    """Three full seeders, a decoy, a tracker: started once per test module."""
    swarm = await LocalSwarm(seeders=3, decoy=True).start()
    yield swarm
    await swarm.stop()


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never inherit settings from the developer's environment."""
    for name in list(os.environ):
        if name.startswith("TRACKER_WATCH_") and name != "TRACKER_WATCH_TEST_DSN":
            monkeypatch.delenv(name)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A local webhook for notices: (URL, what it received, make the next N requests fail with 503)."""
    got: list[dict[str, Any]] = []
    fail = {"left": 0}

    async def handle(request: web.Request) -> web.Response:
        if fail["left"]:
            fail["left"] -= 1
            return web.Response(status=503)
        got.append({"key": request.headers["Idempotency-Key"], "type": request.content_type,
                    "body": await request.read(), "level": request.headers["X-Strike-Level"]})
        return web.Response(status=202)

    app = web.Application()
    app.router.add_post("/notices", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/notices", got, lambda n: fail.__setitem__("left", n)
    await runner.cleanup()
