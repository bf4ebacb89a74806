"""The API refuses, at the door, every .torrent that libtorrent would refuse to watch: nothing is written."""

from __future__ import annotations

import base64
from pathlib import Path

import aiohttp
import pytest

from tests.api.conftest import Api
from tests.domain.test_torrents import POISON
from tracker_watch.demo.swarm import make_content


@pytest.mark.parametrize("name", sorted(POISON))
async def test_poisoned_torrent_is_a_400(api: Api, name: str) -> None:
    body = {"work": "Film", "torrent_base64": base64.b64encode(POISON[name]).decode()}
    status, problem, reply = await api.call("a", "POST", "/api/v1/targets", json=body)
    assert status == 400, problem
    assert reply.content_type == "application/problem+json"
    assert "not a valid .torrent file" in problem["detail"]
    assert await api.db.pool.fetchval("SELECT count(*) FROM targets") == 0


async def test_poisoned_upload_is_a_400(api: Api, tmp_path: Path) -> None:
    good = make_content(tmp_path, size=50_000, piece_length=16384, version="v1").torrent
    form = aiohttp.FormData()
    form.add_field("work", "Film")
    form.add_field("torrent", good.replace(b"i16384e", b"i+16384e"), filename="f.torrent",
                   content_type="application/x-bittorrent")
    status, problem, _ = await api.call("a", "POST", "/api/v1/targets", data=form)
    assert status == 400, problem
    assert "malformed integer" in problem["detail"]
    assert await api.db.pool.fetchval("SELECT count(*) FROM targets") == 0
