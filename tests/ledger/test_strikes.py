"""The strike ledger on a real PostgreSQL: attribution, escalation, disputes, rebuild, notices."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.conftest import Receiver, SettingsFactory
from tests.domain.test_notices import validate
from tracker_watch.config import Settings
from tracker_watch.domain.evidence import Grade, Observation, Source
from tracker_watch.domain.leases import LeaseError, parse
from tracker_watch.domain.targets import parse_target
from tracker_watch.ledger.db import Database
from tracker_watch.ledger.evidence import EvidenceWriter
from tracker_watch.ledger.leases import import_leases
from tracker_watch.ledger.notice_render import ensure_rendered
from tracker_watch.ledger.outbox import Outbox
from tracker_watch.ledger.strikes import StrikeLedger
from tracker_watch.ledger.targets import TargetStore

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
LEASES = "prefix,port_from,port_to,valid_from,valid_to,subscriber\n"


@dataclasses.dataclass
class World:
    db: Database
    settings: Settings
    ledger: StrikeLedger
    writer: EvidenceWriter
    target: int

    async def see(self, ip: str, port: int, days: float, grade: Grade = Grade.VERIFIED, piece: int = 0) -> None:
        await self.writer.write([Observation(
            target_id=self.target, infohash_v1=b"\x11" * 20, infohash_v2=None, observed_at=T0 + timedelta(days=days),
            ip=ip, port=port, source=Source.TRACKER, grade=grade, node="n1", version="tw/test",
            peer_id=b"-qB5010-" + b"x" * 12, client="qBittorrent 5.1.0", pieces_advertised=32, num_pieces=32,
            piece_index=piece if grade is Grade.VERIFIED else None, piece_bytes=65536 if grade is Grade.VERIFIED
            else None)])

    async def strikes(self, status: str = "active") -> list[tuple[int, str, int]]:
        rows = await self.db.pool.fetch(
            "SELECT s.level, coalesce(host(sub.ip), sub.isp || '/' || sub.subscriber_ref) AS who, s.issued_at "
            "FROM strikes s JOIN subjects sub ON sub.id = s.subject_id WHERE s.status = $1 ORDER BY who, s.issued_at",
            status)
        return [(r["level"], r["who"], (r["issued_at"] - T0).days) for r in rows]


@pytest.fixture
async def world(make_settings: SettingsFactory) -> AsyncIterator[World]:
    settings = make_settings(policy={"test_country": "KZ", "jurisdictions": ["KZ"]})
    db = Database(settings)
    await db.start()
    row, _ = await TargetStore(db.pool).register(parse_target("11" * 20), "Studio", "Film", actor="test")
    await db.pool.execute("UPDATE targets SET name = 'film.mkv', total_size = 3000000000 WHERE id = $1", row.id)
    yield World(db, settings, StrikeLedger(db.pool, settings), EvidenceWriter(db.pool, "n1",
                Ed25519PrivateKey.generate()), row.id)
    # every notice a test produced, rendered as a reader or the outbox would (bodies render on first need)
    await ensure_rendered(db.pool, settings, [r["id"] for r in await db.pool.fetch("SELECT id FROM notices")])
    for notice in await db.pool.fetch("SELECT xml FROM notices"):
        validate(notice["xml"].encode())
    await db.stop()


async def test_three_strikes_for_an_unattributed_address(world: World) -> None:
    for day in (0, 3, 8, 20):
        await world.see("10.0.0.5", 6881, day)
    report = await world.ledger.tick()
    assert report.created == 3
    assert await world.strikes() == [(1, "10.0.0.5", 0), (2, "10.0.0.5", 8), (3, "10.0.0.5", 20)]
    await ensure_rendered(world.db.pool, world.settings, [r["id"] for r in await world.db.pool.fetch(
        "SELECT id FROM notices")])
    notices = await world.db.pool.fetch("SELECT state, last_error, xml FROM notices ORDER BY id")
    assert [n["state"] for n in notices] == ["held"] * 3  # no ISP is known for a bare address
    assert "not covered by any ISP" in notices[0]["last_error"]
    for n in notices:
        validate(n["xml"].encode())


async def test_only_the_minimum_grade_counts(world: World) -> None:
    await world.see("10.0.0.6", 6881, 0, Grade.ADVERTISED)
    await world.see("10.0.0.7", 6881, 0, Grade.HANDSHAKE)
    await world.see("10.0.0.8", 6881, 0, Grade.LISTED)
    assert (await world.ledger.tick()).created == 0
    assert await world.strikes() == []


async def test_a_peer_corrupt_in_that_window_never_counts(world: World) -> None:
    await world.see("10.0.0.9", 6881, 0)
    await world.see("10.0.0.9", 7000, 0.1, Grade.CORRUPT)
    await world.ledger.tick()
    assert await world.strikes() == []


async def test_jurisdiction(world: World, make_settings: SettingsFactory) -> None:
    await world.see("8.8.8.8", 6881, 0)  # United States
    report = await world.ledger.tick()
    assert (report.attributed, report.out_of_jurisdiction, report.created) == (1, 1, 0)
    kept = await world.db.pool.fetchrow("SELECT country, in_jurisdiction FROM attributions")
    assert kept is not None
    assert (kept["country"], kept["in_jurisdiction"]) == ("US", False)  # kept, but starts nothing
    everywhere = make_settings(policy={"jurisdictions": [], "test_country": ""})
    await world.see("10.1.1.1", 6881, 0)  # private, no test country: never counts
    assert (await StrikeLedger(world.db.pool, everywhere).rebuild()).created == 1
    assert await world.strikes() == [(1, "8.8.8.8", 0)]


async def test_cgnat_ports_attribute_to_different_subscribers(world: World) -> None:
    async with world.db.pool.acquire() as conn:
        await import_leases(conn, "CG Net", parse(LEASES + "100.64.0.1,1000,1999,2026-01-01,,SUB-A\n"
                                                           "100.64.0.1,2000,2999,2026-01-01,,SUB-B\n"
                                                           "100.64.0.2,,,2026-01-01,2026-03-01,SUB-OLD\n"))
    await world.see("100.64.0.1", 1500, 0)
    await world.see("100.64.0.1", 2500, 0)
    await world.see("100.64.0.2", 6881, 0)  # after SUB-OLD's lease ended: the bare address
    await world.ledger.tick()
    assert await world.strikes() == [(1, "100.64.0.2", 0), (1, "CG Net/SUB-A", 0), (1, "CG Net/SUB-B", 0)]


async def test_lease_import_is_all_or_nothing(world: World) -> None:
    async with world.db.pool.acquire() as conn:
        await import_leases(conn, "ISP1", parse(LEASES + "203.0.113.0/24,,,2026-01-01,,S1\n"))
        with pytest.raises(LeaseError, match="line 3: overlaps a lease already imported for ISP ISP1"):
            await import_leases(conn, "ISP2", parse(LEASES + "198.51.100.0/24,,,2026-01-01,,S2\n"
                                                             "203.0.113.128/25,,,2026-06-01,,S3\n"))
    assert await world.db.pool.fetchval("SELECT count(*) FROM isp_leases") == 1


async def test_refeeding_restarting_and_racing_never_duplicate(world: World) -> None:
    for day in (0, 8, 20):
        await world.see("10.0.0.5", 6881, day)
    others = [StrikeLedger(world.db.pool, world.settings) for _ in range(3)]
    await asyncio.gather(*(x.tick() for x in others))  # three nodes evaluating at once
    await world.ledger.tick()
    await world.ledger.tick()
    assert await world.strikes() == [(1, "10.0.0.5", 0), (2, "10.0.0.5", 8), (3, "10.0.0.5", 20)]
    assert await world.db.pool.fetchval("SELECT count(*) FROM notices") == 3
    live = await world.db.pool.fetch("SELECT id, level, issued_at FROM strikes ORDER BY id")
    report = await world.ledger.rebuild()
    assert (report.created, report.superseded) == (0, 0)
    assert await world.db.pool.fetch("SELECT id, level, issued_at FROM strikes ORDER BY id") == live


async def test_void_recomputes_what_follows(world: World) -> None:
    for day in (0, 8, 20):
        await world.see("10.0.0.5", 6881, day)
    await world.ledger.tick()
    first = await world.db.pool.fetchval("SELECT id FROM strikes WHERE level = 1")
    assert await world.ledger.void(first, "operator:ana", "subscriber proved the router was compromised")
    assert await world.strikes() == [(1, "10.0.0.5", 8), (2, "10.0.0.5", 20)]
    assert await world.strikes("voided") == [(1, "10.0.0.5", 0)]
    assert len(await world.strikes("superseded")) == 2
    audit = await world.db.pool.fetchrow("SELECT actor, action, detail FROM audit_log WHERE action = 'strike.void'")
    assert audit is not None
    assert audit["actor"] == "operator:ana"
    assert "compromised" in audit["detail"]
    assert await world.ledger.void(first, "x", "again") is None  # already void
    assert (await world.ledger.rebuild()).created == 0  # the void survives a rebuild


async def test_notice_delivery_webhook_with_retry_and_drop_folder(
        world: World, receiver: Receiver, tmp_path: Path) -> None:
    url, got, fail_next = receiver
    async with world.db.pool.acquire() as conn:
        await import_leases(conn, "Kaz Telecom", parse(LEASES + "10.0.0.0/24,,,2026-01-01,,SUB-7\n"))
        await import_leases(conn, "Drop ISP", parse(LEASES + "10.0.1.0/24,,,2026-01-01,,SUB-8\n"))
    await world.db.pool.execute("UPDATE isps SET webhook_url = $1, abuse_email = 'abuse@kaz.example' "
                                "WHERE name = 'Kaz Telecom'", url)
    await world.db.pool.execute("UPDATE isps SET drop_dir = $1, abuse_email = 'abuse@drop.example' "
                                "WHERE name = 'Drop ISP'", str(tmp_path / "drop"))
    await world.see("10.0.0.5", 51413, 0)
    await world.see("10.0.1.5", 51413, 0)
    await world.ledger.tick()
    outbox = Outbox(world.db.pool, dataclasses.replace(world.settings.notices, retry_base_s=0.2))
    fail_next(1)
    first = await outbox.deliver_due()
    assert first.retried == 1  # the webhook answered 503: retried later, nothing lost
    await until(lambda: _delivered(world), outbox)
    await outbox.close()
    assert len(got) == 1
    assert got[0]["key"] == "tracker-watch-strike-" + str(await world.db.pool.fetchval(
        "SELECT s.id FROM strikes s JOIN subjects sub ON sub.id = s.subject_id WHERE sub.isp = 'Kaz Telecom'"))
    assert got[0]["type"] == "application/xml"
    validate(got[0]["body"])
    assert b"SUB-7" in got[0]["body"]
    assert b"abuse@kaz.example" in got[0]["body"]
    dropped = sorted(p.name for p in (tmp_path / "drop").iterdir())
    assert [p.rsplit(".", 1)[1] for p in dropped] == ["json", "xml"]
    validate((tmp_path / "drop" / dropped[1]).read_bytes())
    states = await world.db.pool.fetch("SELECT state, attempts FROM notices ORDER BY id")
    assert sorted((s["state"], s["attempts"]) for s in states) == [("delivered", 1), ("delivered", 2)]


async def _delivered(world: World) -> bool:
    return bool(await world.db.pool.fetchval("SELECT bool_and(state = 'delivered') FROM notices"))


async def until(done: Callable[[], Awaitable[bool]], outbox: Outbox) -> None:
    for _ in range(50):
        if await done():
            return
        await outbox.deliver_due()
        await asyncio.sleep(0.1)
    raise TimeoutError("notices not delivered")


async def test_notice_names_the_key_that_signs_its_evidence(world: World) -> None:
    from tracker_watch.ledger import signing

    await world.see("10.0.0.9", 6881, 0)
    await world.writer.checkpoint()
    await world.ledger.tick()
    [notice_id] = [r["id"] for r in await world.db.pool.fetch("SELECT id FROM notices")]
    await ensure_rendered(world.db.pool, world.settings, [notice_id])
    [notice] = await world.db.pool.fetch("SELECT xml, json FROM notices")
    fingerprint = signing.fingerprint(signing.public_raw(world.writer.key))
    assert f"Evidence signing key of node n1: {fingerprint}" in json.loads(notice["json"])["text"]
    assert fingerprint in notice["xml"]
