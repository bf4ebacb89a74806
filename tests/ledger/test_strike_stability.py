"""Strikes are stable and voids stick, on a real PostgreSQL: issue 17's reports, and a property run over random
incident streams, voids and deliveries through the real ledger and outbox."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import itertools
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import SettingsFactory
from tests.domain.test_notices import validate
from tests.helpers import wait_for_async
from tracker_watch.cli_strikes import strikes_void
from tracker_watch.config import Settings
from tracker_watch.domain.evidence import Grade, Observation, Source
from tracker_watch.domain.leases import parse
from tracker_watch.domain.notices import NS
from tracker_watch.domain.targets import parse_target
from tracker_watch.ledger.db import Database
from tracker_watch.ledger.evidence import EvidenceWriter
from tracker_watch.ledger.leases import import_leases
from tracker_watch.ledger.notice_render import ensure_rendered, render_notices
from tracker_watch.ledger.outbox import Outbox
from tracker_watch.ledger.strikes import StrikeLedger
from tracker_watch.ledger.targets import TargetStore

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
_counter = itertools.count(1)


@dataclasses.dataclass
class Bench:
    db: Database
    settings: Settings
    ledger: StrikeLedger
    outbox: Outbox
    writer: EvidenceWriter
    targets: list[tuple[int, bytes]]
    drop: Path

    async def see(self, work: int, ip: str, at: datetime, port: int = 51413, grade: Grade = Grade.VERIFIED,
                  client: str | None = "qBittorrent 5.1.0") -> None:
        target, ih = self.targets[work]
        verified = grade is Grade.VERIFIED
        await self.writer.write([Observation(
            target_id=target, infohash_v1=ih, infohash_v2=None, observed_at=at, ip=ip, port=port,
            source=Source.TRACKER, grade=grade, node="n1", version="tw/test",
            peer_id=b"-qB5010-" + b"x" * 12, client=client, pieces_advertised=32, num_pieces=32,
            piece_index=0 if verified else None, piece_bytes=65536 if verified else None)])

    async def rows(self, sql: str, *args: object) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in await self.db.pool.fetch(sql, *args)]

    async def deliver(self) -> None:
        while (await self.outbox.deliver_due(100)).delivered:
            pass


async def open_bench(settings: Settings, drop: Path, ip: str = "10.0.0.5", ref: str = "SUB") -> Bench:
    db = Database(settings)
    await db.start()
    targets = []
    for work in ("Film A", "Film B", "Film C"):
        ih = next(_counter).to_bytes(20, "big")
        row, _ = await TargetStore(db.pool).register(parse_target(ih.hex()), "Studio", work, actor="test")
        targets.append((row.id, ih))
    await db.pool.execute("UPDATE targets SET name = 'film.mkv', total_size = 3000000000")
    async with db.pool.acquire() as conn:
        await import_leases(conn, "Kaz Telecom", parse("prefix,port_from,port_to,valid_from,valid_to,subscriber\n"
                                                       f"{ip},,,2026-01-01,,{ref}\n"))
    await db.pool.execute("UPDATE isps SET drop_dir = $1, abuse_email = 'abuse@kaz.example'", str(drop))
    return Bench(db, settings, StrikeLedger(db.pool, settings), Outbox(db.pool, settings.notices),
                 EvidenceWriter(db.pool, "n1", Ed25519PrivateKey.generate()), targets, drop)


@pytest.fixture
async def bench(make_settings: SettingsFactory, tmp_path: Path) -> AsyncIterator[Bench]:
    b = await open_bench(make_settings(policy={"test_country": "KZ", "jurisdictions": ["KZ"]}), tmp_path / "drop")
    yield b
    await ensure_rendered(b.db.pool, b.settings, [r["id"] for r in await b.db.pool.fetch("SELECT id FROM notices")])
    for notice in await b.db.pool.fetch("SELECT xml FROM notices"):
        validate(notice["xml"].encode())
    await b.outbox.close()
    await b.db.stop()


async def test_a_tie_arriving_later_never_replaces_a_delivered_strike(bench: Bench) -> None:
    await bench.see(0, "10.0.0.5", T0 + timedelta(milliseconds=1))  # work A
    await bench.ledger.tick()
    await bench.deliver()
    before = await bench.rows("SELECT id, level, status, incident_key FROM strikes")
    await bench.see(1, "10.0.0.5", T0)  # work B, 1 ms earlier, a minute later
    report = await bench.ledger.tick()
    assert (report.created, report.superseded) == (0, 0)
    assert await bench.rows("SELECT id, level, status, incident_key FROM strikes") == before
    assert await bench.rows("SELECT kind, state FROM notices") == [("notice", "delivered")]
    assert len(list(bench.drop.glob("*.xml"))) == 1


async def test_a_void_sticks_withdraws_the_delivered_notice_and_names_who(bench: Bench) -> None:
    await bench.see(0, "10.0.0.5", T0)
    await bench.see(1, "10.0.0.5", T0 + timedelta(hours=3))  # another work, the same day
    await bench.ledger.tick()
    await bench.deliver()
    (strike,) = await bench.rows("SELECT id FROM strikes")
    args = argparse.Namespace(id=strike[0], reason="router compromised", by="ana")
    assert await strikes_void(bench.db, bench.settings, args) == 0
    await bench.ledger.tick()
    assert await bench.rows("SELECT status, changed_by FROM strikes") == [("voided", "cli:ana")]  # no strike 2
    audit = await bench.db.pool.fetchrow("SELECT actor, detail FROM audit_log WHERE action = 'strike.void'")
    assert audit is not None
    assert (audit["actor"], "router compromised" in audit["detail"]) == ("cli:ana", True)
    await bench.deliver()
    notices = await bench.rows("SELECT id, kind, state, withdraws FROM notices ORDER BY id")
    assert [n[1:] for n in notices] == [("notice", "delivered", None), ("withdrawal", "delivered", notices[0][0])]
    xml = (bench.drop / f"tracker-watch-strike-{strike[0]}-withdrawal.xml").read_bytes()
    validate(xml)
    root = ET.fromstring(xml)
    q = {"a": NS}
    assert root.find("a:Type", q).get("Retraction") == "true"  # type: ignore[union-attr]
    assert root.findtext("a:Case/a:ID", namespaces=q) == f"TW-{strike[0]:08d}"  # the case the ISP holds
    assert root.findtext("a:Case/a:Status", namespaces=q) == "Withdrawn"
    assert "router" not in xml.decode()  # the operator's words stay in the audit log
    doc = json.loads((bench.drop / f"tracker-watch-strike-{strike[0]}-withdrawal.json").read_text())
    assert (doc["kind"], doc["withdraws"], doc["retraction"]) == ("withdrawal", f"TW-{strike[0]:08d}", True)
    assert (await bench.ledger.rebuild()).created == 0  # the void survives a rebuild
    from tracker_watch.cli import main

    with pytest.raises(SystemExit):  # --by is required
        main(["strikes", "void", "1", "--reason", "x"])


async def test_an_undelivered_notice_is_cancelled_without_a_withdrawal(bench: Bench) -> None:
    await bench.see(0, "10.0.0.5", T0)
    await bench.ledger.tick()
    (strike,) = await bench.rows("SELECT id FROM strikes")
    assert (await bench.ledger.void(strike[0], "token:1:ana", "x")) == (0, 0, 0)
    assert await bench.rows("SELECT kind, state FROM notices") == [("notice", "cancelled")]


async def test_a_void_during_a_delivery_waits_for_it_and_withdraws(bench: Bench) -> None:
    await bench.see(0, "10.0.0.5", T0)
    await bench.ledger.tick()
    strike = await bench.db.pool.fetchval("SELECT id FROM strikes")
    async with bench.db.pool.acquire() as outbox:  # an outbox node mid-delivery holds the notice's row lock
        tx = outbox.transaction()
        await tx.start()
        notice = await outbox.fetchval("SELECT id FROM notices WHERE strike_id = $1 FOR UPDATE", strike)
        # as the outbox does: the body is rendered when the notice is claimed for delivery
        await render_notices(outbox, bench.settings.notices, bench.settings.evidence.incident_window_s, [notice])
        me = await outbox.fetchval("SELECT pg_backend_pid()")
        voiding = asyncio.create_task(bench.ledger.void(strike, "cli:ana", "disputed"))

        async def void_waits() -> bool:
            return bool(await bench.db.pool.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))", me))

        await wait_for_async(void_waits, step=0.02)
        await outbox.execute("UPDATE notices SET state = 'delivered', delivered_at = now(), attempts = 1 "
                             "WHERE strike_id = $1", strike)
        await tx.commit()
    assert (await voiding).withdrawals == 1  # type: ignore[union-attr]
    assert await bench.rows("SELECT kind, state FROM notices ORDER BY id") == [("notice", "delivered"),
                                                                              ("withdrawal", "pending")]


async def test_voiding_strike_one_withdraws_what_rested_on_it(bench: Bench) -> None:
    for day in (0, 8, 20):
        await bench.see(0, "10.0.0.5", T0 + timedelta(days=day))
    await bench.ledger.tick()
    await bench.deliver()
    first = await bench.db.pool.fetchval("SELECT id FROM strikes WHERE level = 1")
    result = await bench.ledger.void(first, "cli:ana", "disputed")
    assert result == (2, 2, 3)  # strikes 2 and 3 withdrawn and re-derived one level down; 3 withdrawals
    superseded = await bench.rows("SELECT changed_by, reason FROM strikes WHERE status = 'superseded'")
    assert superseded == [("cli:ana", f"rested on strike {first}, which was voided")] * 2
    await bench.deliver()
    kinds = await bench.rows("SELECT kind, state, count(*) FROM notices GROUP BY 1, 2 ORDER BY 1, 2")
    assert kinds == [("notice", "delivered", 5), ("withdrawal", "delivered", 3)]


async def test_the_notice_names_the_client_when_any_row_of_the_incident_knew_it(bench: Bench) -> None:
    await bench.see(0, "10.0.0.5", T0, grade=Grade.ADVERTISED, client="Transmission 4.0.6")
    await bench.see(0, "10.0.0.5", T0 + timedelta(seconds=1), port=6000, grade=Grade.ADVERTISED, client="other")
    await bench.see(0, "10.0.0.5", T0 + timedelta(seconds=2), client=None)  # verified, before any handshake sample
    await bench.ledger.tick()
    await ensure_rendered(bench.db.pool, bench.settings, [await bench.db.pool.fetchval("SELECT id FROM notices")])
    xml = await bench.db.pool.fetchval("SELECT xml FROM notices")
    sub_type = ET.fromstring(xml).find("a:Source/a:SubType", {"a": NS})
    assert sub_type is not None
    assert sub_type.get("Application") == "Transmission 4.0.6"  # same address and port; never another port's


# --- property: random streams, voids and deliveries through the real ledger ------------------------------------

events = st.lists(st.one_of(
    st.tuples(st.just("see"), st.integers(0, 2), st.integers(0, 60), st.integers(0, 2)),  # work, day, ms
    st.tuples(st.just("tick"), st.just(0), st.just(0), st.just(0)),
    st.tuples(st.just("void"), st.integers(0, 5), st.just(0), st.just(0)),
    st.tuples(st.just("deliver"), st.just(0), st.just(0), st.just(0))), min_size=1, max_size=14)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events)
def test_property_no_double_notice_and_no_voided_evidence_escalates(
        make_settings: SettingsFactory, tmp_path: Path, stream: list[tuple[str, int, int, int]]) -> None:
    asyncio.run(_scenario(make_settings(policy={"test_country": "KZ", "jurisdictions": ["KZ"]}), tmp_path, stream))


async def _scenario(settings_: Settings, tmp_path: Path, stream: list[tuple[str, int, int, int]]) -> None:
    n = next(_counter)
    ip, ref = f"10.1.{n // 250}.{n % 250 + 1}", f"SUB-{n}"  # a subscriber of its own per example
    b = await open_bench(settings_, tmp_path / "drop", ip, ref)
    subject = None
    try:
        for kind, a, day, ms in [*stream, ("tick", 0, 0, 0), ("deliver", 0, 0, 0)]:
            if kind == "see":
                await b.see(a, ip, T0 + timedelta(days=day, milliseconds=ms))
            elif kind == "tick":
                assert (await b.ledger.tick()).superseded == 0  # new evidence never swaps an issued strike
            elif kind == "deliver":
                await b.deliver()
            else:
                subject = subject or await b.db.pool.fetchval(
                    "SELECT id FROM subjects WHERE subscriber_ref = $1", ref)
                active = [r[0] for r in await b.rows(
                    "SELECT id FROM strikes WHERE status = 'active' AND subject_id = $1 ORDER BY id", subject)]
                if active:
                    assert await b.ledger.void(active[a % len(active)], "cli:prop", "disputed") is not None
        await _check(b)
    finally:
        await b.outbox.close()
        await b.db.stop()


async def _check(b: Bench) -> None:
    # one notice per strike (the schema), delivered at most once; one withdrawal per notice the ISP got
    per_strike = await b.rows("SELECT strike_id, count(*) FROM notices WHERE kind = 'notice' GROUP BY 1 HAVING "
                              "count(*) > 1")
    assert per_strike == []
    unretracted = await b.rows(
        "SELECT s.id FROM strikes s JOIN notices n ON n.strike_id = s.id AND n.kind = 'notice' "
        "WHERE s.status <> 'active' AND n.state = 'delivered' "
        "AND NOT EXISTS (SELECT 1 FROM notices w WHERE w.withdraws = n.id)")
    assert unretracted == []
    files = sorted(p.name for p in b.drop.glob("*.xml")) if b.drop.exists() else []
    assert len(files) == len(set(files)) == await b.db.pool.fetchval(
        "SELECT count(*) FROM notices WHERE state = 'delivered'")
    # no voided window ever counts again: no standing strike, nor any created after the void, rests on one
    leaked = await b.rows(
        "SELECT s.id FROM strikes s JOIN strikes v ON v.subject_id = s.subject_id AND v.status = 'voided' "
        "AND split_part(v.incident_key, '/', 2) = split_part(s.incident_key, '/', 2) "
        "WHERE s.id <> v.id AND (s.status = 'active' OR s.created_at >= v.changed_at)")
    assert leaked == []
    # a rebuild from the evidence comes out identical to the live ledger
    live = await b.rows("SELECT id, level, status, cycle_start, issued_at FROM strikes ORDER BY id")
    report = await b.ledger.rebuild()
    assert (report.created, report.superseded) == (0, 0)
    assert await b.rows("SELECT id, level, status, cycle_start, issued_at FROM strikes ORDER BY id") == live
