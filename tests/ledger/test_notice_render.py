"""Notices are rendered when first needed (delivery or a reader), from the evidence their strike rested on.

Rendering later must give what rendering at the strike's creation gave: the same evidence (not what
arrived since), the same issue time, the same bytes however often or by whom it is rendered.
"""

from __future__ import annotations

import json
from datetime import datetime

from tests.domain.test_notices import validate
from tests.ledger.test_strikes import World, world  # noqa: F401  (the fixture)
from tracker_watch.ledger.notice_render import ensure_rendered


async def _notice(w: World) -> dict[str, object]:
    ids = [r["id"] for r in await w.db.pool.fetch("SELECT id FROM notices")]
    await ensure_rendered(w.db.pool, w.settings, ids)
    row = await w.db.pool.fetchrow("SELECT id, created_at, xml, json FROM notices")
    assert row is not None
    return dict(row)


async def test_a_notice_rendered_later_shows_the_evidence_its_strike_rested_on(world: World) -> None:  # noqa: F811
    await world.see("10.0.0.5", 6881, 0)
    await world.ledger.tick()
    assert await world.db.pool.fetchval("SELECT xml FROM notices") is None  # bare until needed
    first = await world.db.pool.fetchval("SELECT observation_id FROM attributions")
    await world.see("10.0.0.5", 6881, 0.1)  # the same incident, seen again after the strike
    await world.ledger.tick()
    assert await world.db.pool.fetchval("SELECT count(*) FROM attributions") == 2
    notice = await _notice(world)
    doc = json.loads(str(notice["json"]))
    assert doc["evidence"]["observations"] == [str(first)]  # not what arrived after the strike
    validate(str(notice["xml"]).encode())
    created = notice["created_at"]
    assert isinstance(created, datetime)
    # the issue time is the notice's creation (to the millisecond), not the time of rendering
    assert datetime.fromisoformat(doc["issued_at"]) == created.replace(microsecond=created.microsecond // 1000 * 1000)
    # rendering again (a second reader, a retried delivery) makes the very same bytes
    await world.db.pool.execute("UPDATE notices SET xml = NULL, json = NULL")
    again = await _notice(world)
    assert (again["xml"], again["json"]) == (notice["xml"], notice["json"])


async def test_a_notice_waits_while_a_rebuild_re_attributes_its_evidence(world: World) -> None:  # noqa: F811
    await world.see("10.0.0.5", 6881, 0)
    await world.ledger.tick()
    await world.db.pool.execute("TRUNCATE attributions, attribution_progress")  # what rebuild starts with
    ids = [r["id"] for r in await world.db.pool.fetch("SELECT id FROM notices")]
    await ensure_rendered(world.db.pool, world.settings, ids)
    assert await world.db.pool.fetchval("SELECT xml FROM notices") is None  # not from half the evidence
    await world.ledger.tick()  # attribution passes the cut again
    assert (await _notice(world))["xml"] is not None
