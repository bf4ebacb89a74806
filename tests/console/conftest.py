"""A real API server (with the console) over PostgreSQL, on its own event loop in a thread so that blocking
Selenium calls never stall it, shared by a test module; and a headless Chromium driven by Selenium."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import threading
import uuid
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.api.conftest import make_tokens
from tests.helpers import wait_for_async
from tests.ledger.package_forge import PIECE, make_torrent
from tests.ledger.test_observations import _obs
from tracker_watch.config import Settings, settings_from_mapping
from tracker_watch.daemon import Daemon
from tracker_watch.demo.run import demo_settings
from tracker_watch.domain import bencode
from tracker_watch.domain.evidence import Grade
from tracker_watch.domain.leases import parse
from tracker_watch.domain.targets import parse_target
from tracker_watch.ledger.db import Database
from tracker_watch.ledger.evidence import EvidenceWriter
from tracker_watch.ledger.leases import import_leases
from tracker_watch.ledger.strikes import StrikeLedger
from tracker_watch.ledger.targets import TargetStore

T = TypeVar("T")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "console"


class Served:
    """The real daemon (swarm engine, leases, API with the console) on a private loop; `run` executes a
    coroutine there."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="console-server", daemon=True)
        self.daemon = Daemon(settings)
        self.db = self.daemon.db
        self.tokens: dict[str, str] = {}
        self.url = ""

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> None:
        self.thread.start()
        self.run(self._start())

    async def _start(self) -> None:
        await self.daemon.start()
        self.url = f"http://127.0.0.1:{self.daemon.api.port}"
        self.tokens = await make_tokens(self.db)

    def stop(self) -> None:
        self.run(self.daemon.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def served(pg_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    schema = f"tw_test_{uuid.uuid4().hex[:12]}"
    base = demo_settings(tmp_path_factory.mktemp("console") / "state", dsn=pg_dsn, schema=schema)
    raw = {k: {kk: (str(vv) if isinstance(vv, Path) else vv) for kk, vv in v.items()}
           for k, v in dataclasses.asdict(base).items()}
    raw["api"].update({"listen": "127.0.0.1:0", "rate_per_s": 1000.0, "burst": 1000})
    raw["node"]["name"] = "console-test"
    served = Served(settings_from_mapping(raw))
    served.start()
    yield served

    async def drop() -> None:
        conn = await asyncpg.connect(pg_dsn)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()
    served.stop()
    loop = asyncio.new_event_loop()  # the server's loop has stopped; pytest's may be running this fixture
    try:
        loop.run_until_complete(drop())
    finally:
        loop.close()


async def seed_case(db: Database, holder: str, work: str, ip: str, subscriber: str) -> dict[str, Any]:
    """A holder's target (from a .torrent, so its metadata is known) with a verified piece from a Kaz Telecom
    subscriber, sealed by a signed checkpoint; then the strike engine's tick: a strike and its notice."""
    torrent, info = make_torrent(work.encode())
    spec = parse_target(torrent)
    assert spec.infohash_v1 is not None
    infohash = spec.infohash_v1.hex()
    row, _ = await TargetStore(db.pool).register(spec, holder, work, actor="test")
    async with db.pool.acquire() as conn:
        await import_leases(conn, "Kaz Telecom", parse("prefix,port_from,port_to,valid_from,valid_to,subscriber\n"
                                                        f"{ip}/32,,,2020-01-01,,{subscriber}\n"))
    node = f"node-{ip}"  # a chain of its own per case
    decoded = bencode.decode(info)
    assert isinstance(decoded, dict)
    obs = dataclasses.replace(_obs(row.id, ip=ip), grade=Grade.VERIFIED, piece_index=0, piece_bytes=PIECE,
                              piece_sha1=decoded[b"pieces"][:20], piece_sha256=bytes(32),
                              infohash_v1=bytes.fromhex(infohash), node=node)
    listed = dataclasses.replace(_obs(row.id, ip="10.9.9.9", port=7000), grade=Grade.LISTED,
                                 infohash_v1=bytes.fromhex(infohash), node=node)
    writer = EvidenceWriter(db.pool, node, Ed25519PrivateKey.generate())
    await writer.write([obs, listed])
    await writer.checkpoint()
    settings = settings_from_mapping({"policy": {"test_country": "KZ"}, "database": {"schema": db.schema}})
    await StrikeLedger(db.pool, settings).tick()
    # a daemon's own tick may have taken these rows first and still be evaluating them: wait for its commit
    notice_sql = ("SELECT n.id FROM notices n JOIN strikes s ON s.id = n.strike_id JOIN works w ON w.id = s.work_id "
                  "WHERE w.title = $1")
    await wait_for_async(lambda: _exists(db, notice_sql, work))
    notice = await db.pool.fetchval(notice_sql, work)
    strike = await db.pool.fetchval("SELECT strike_id FROM notices WHERE id = $1", notice)
    return {"target": row.id, "strike": strike, "notice": notice, "hash": infohash}


async def _exists(db: Database, sql: str, *args: Any) -> bool:
    return await db.pool.fetchval(sql, *args) is not None


def _driver_paths() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    paths = _driver_paths()
    if paths is None:
        if os.environ.get("CI"):
            pytest.fail("chromium and chromium-driver are not installed (.ci/run installs them)")
        pytest.skip("chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900",
                "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-sync",
                "--disable-component-update", "--disable-default-apps", "--host-resolver-rules=MAP * ~NOTFOUND, "
                "EXCLUDE 127.0.0.1"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(paths[1]))
    driver.implicitly_wait(0)
    yield driver
    driver.quit()
