"""The API served by the running daemon: bulk registration reaches the swarm engine, and the README's curl
walk-through (register a magnet, watch detections, download evidence and notices) works end to end."""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.conftest import SettingsFactory
from tests.helpers import wait_for, wait_for_async
from tracker_watch.api.auth import create_token
from tracker_watch.daemon import Daemon
from tracker_watch.demo.swarm import LocalSwarm


@pytest.fixture
async def running(make_settings: SettingsFactory) -> AsyncIterator[tuple[Daemon, aiohttp.ClientSession, str]]:
    daemon = Daemon(make_settings(policy={"test_country": "KZ", "evaluate_interval_s": 0.5},
                                  api={"listen": "127.0.0.1:0"}))
    await daemon.start()
    async with daemon.db.pool.acquire() as conn:
        _, token = await create_token(conn, "rightsholder", "Studio", "test")
    async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{daemon.api.port}",
                                     headers={"Authorization": f"Bearer {token}"}) as http:
        yield daemon, http, token
    await daemon.stop()


async def test_bulk_of_ten_thousand_reaches_the_swarm_engine(running: tuple[Daemon, Any, str]) -> None:
    daemon, http, _ = running
    targets = [{"work": "Catalogue", "infohash": os.urandom(20).hex()} for _ in range(10_000)]
    async with http.post("/api/v1/targets/bulk", json={"targets": targets}) as r:
        assert r.status == 201, await r.text()
        body = await r.json()
    assert body["created"] == 10_000
    assert daemon.engine is not None
    await wait_for(lambda: len(daemon.engine.swarms) == 10_000, timeout=60)  # type: ignore[union-attr]
    async with http.get(f"/api/v1/targets/{body['target_ids'][-1]}") as r:
        assert (await r.json())["live"]["watched"] is True


async def test_readme_walkthrough(running: tuple[Daemon, Any, str], local_swarm: LocalSwarm) -> None:
    daemon, http, _ = running
    magnet = local_swarm.content.magnet([local_swarm.tracker.url])
    async with http.post("/api/v1/targets", json={"work": "Demo Film", "magnet": magnet}) as r:
        assert r.status == 201
        target = await r.json()

    async def detections() -> bool:
        async with http.get(f"/api/v1/observations?target={target['id']}&grade=verified") as r:
            return len({o["ip"] for o in (await r.json())["items"]}) == len(local_swarm.peers)

    await wait_for_async(detections, timeout=60)
    async with http.get(f"/api/v1/targets/{target['id']}") as r:
        live = (await r.json())
    assert live["metadata"]["num_pieces"] == local_swarm.content.num_pieces
    assert live["live"]["last_seen"]
    await daemon.writer.checkpoint()  # type: ignore[union-attr]
    seeder = local_swarm.peers[0].ip
    async with http.get(f"/api/v1/evidence?target={target['id']}&ip={seeder}") as r:
        assert r.status == 200
        assert r.headers["Content-Disposition"].startswith("attachment")
        names = zipfile.ZipFile(io.BytesIO(await r.read())).namelist()
    assert {"manifest.json", "observations.json", "chain.json", "verify.py"} <= set(names)

    async def notices() -> bool:
        async with http.get("/api/v1/notices") as r:
            return len((await r.json())["items"]) == len(local_swarm.peers)

    await wait_for_async(notices, timeout=30)
    async with http.get("/api/v1/notices") as r:
        first = (await r.json())["items"][0]
    assert first["state"] == "held"  # unattributed loopback addresses: no ISP to send to
    async with http.get(f"/api/v1/notices/{first['id']}?format=xml") as r:
        assert r.content_type == "application/xml"
        assert b"<Infringement" in await r.read()
    async with http.get("/api/v1/incidents?grade=verified") as r:
        assert len((await r.json())["items"]) == len(local_swarm.peers)
