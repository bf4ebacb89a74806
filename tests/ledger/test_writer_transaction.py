"""What the evidence writer does inside its transaction, on its critical path (issue 14, target 1): the
incident staging rows arrive as a binary COPY encoded beforehand, the upsert sends back only the incidents
whose evidence changed, and addresses of both families chain and verify alike."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.ledger.test_observations import _obs, _target
from tracker_watch.domain.evidence import Grade, Observation, encode_observation, utc_now_ms
from tracker_watch.domain.incidents import IncidentDelta
from tracker_watch.evidence.sinks import InOrder
from tracker_watch.ledger import copy_binary
from tracker_watch.ledger import evidence as ev
from tracker_watch.ledger import evidence_prep as prep
from tracker_watch.ledger.db import Database
from tracker_watch.ledger.verify import verify_ledger


def _deltas() -> list[IncidentDelta]:
    now = utc_now_ms()
    return [IncidentDelta(1, "127.0.0.11", now, now, now + timedelta(seconds=3), Grade.VERIFIED, False,
                          {6881, 6882}, {0, 7, 31}, 3 * 16384, 4),
            IncidentDelta(2, "2001:db8::1", now, now, now, Grade.LISTED, True, set(), set(), 0, 1),
            IncidentDelta(3, "::ffff:10.1.2.3", now, now, now, Grade.HANDSHAKE, False, {1}, set(), 0, 2**31 - 1)]


async def test_the_binary_stage_holds_what_asyncpg_would_have_copied(db: Database) -> None:
    records = prep.stage_records(_deltas())
    async with db.pool.acquire() as conn, conn.transaction():
        await conn.execute(ev._STAGE_INCIDENTS)
        await conn.copy_records_to_table("incidents_stage", columns=ev._INC_STAGE_COLUMNS, records=records)
        expected = [tuple(r) for r in await conn.fetch("SELECT * FROM incidents_stage ORDER BY target_id")]
        await conn.execute("DELETE FROM incidents_stage")
        await conn.copy_to_table("incidents_stage", columns=ev._INC_STAGE_COLUMNS, format="binary",
                                 source=copy_binary.source(copy_binary.stage_buffer(records)))
        got = [tuple(r) for r in await conn.fetch("SELECT * FROM incidents_stage ORDER BY target_id")]
    assert got == expected
    assert [r[7] for r in got] == [[6881, 6882], [], [1]]  # arrays, the empty one included


async def test_the_upsert_sends_back_only_the_incidents_that_changed(db: Database) -> None:
    target = await _target(db)
    writer = ev.EvidenceWriter(db.pool, "n1", Ed25519PrivateKey.generate())
    first = [_obs(target, ip=f"127.0.0.{11 + i}") for i in range(4)]
    await writer.write(first)
    # again: two touches that change nothing, one new port, one higher grade
    again = [dataclasses.replace(o, id=_obs(target).id) for o in first]
    again[2] = dataclasses.replace(again[2], port=7000)
    again[3] = dataclasses.replace(again[3], grade=Grade.VERIFIED, piece_index=1, piece_bytes=16384)
    async with db.pool.acquire() as conn, conn.transaction():
        await conn.execute(ev._STAGE_INCIDENTS)
        await conn.copy_to_table("incidents_stage", columns=ev._INC_STAGE_COLUMNS, format="binary",
                                 source=copy_binary.source(writer.prepare(again).stage))
        changed = await conn.fetch(ev._UPSERT_INCIDENTS, False)
    assert [r["ip"] for r in changed] == ["127.0.0.13", "127.0.0.14"]  # as text: no ipaddress object to make
    assert [r["incident_id"] for r in changed] == sorted(r["incident_id"] for r in changed)


async def test_addresses_of_both_families_chain_and_verify(db: Database) -> None:
    target = await _target(db)
    writer = ev.EvidenceWriter(db.pool, "n1", Ed25519PrivateKey.generate())
    seen: list[int] = []
    writer.on_stored = lambda _counts, touched: seen.append(touched)
    peers = ["127.0.0.11", "2001:db8::1", "::ffff:10.1.2.3", "fe80::1"]
    await writer.write([_obs(target, ip=ip) for ip in peers])
    await writer.write([_obs(target, ip=ip) for ip in peers])  # touched, unchanged: nothing chained
    await writer.write([_obs(target, ip=ip, port=7000) for ip in peers])
    assert seen == [4, 4, 4]  # every incident touched counts, chained or not
    async with db.pool.acquire() as conn:
        report = await verify_ledger(conn)
    assert report.ok
    assert await db.pool.fetchval("SELECT count(*) FROM incident_changes") == 8
    stored = {r[0] for r in await db.pool.fetch("SELECT DISTINCT ip FROM incident_changes")}
    assert stored == {ipaddress.ip_address(ip) for ip in peers}


class _Watched:
    """The writer's connection, remembering which statement is in PostgreSQL (the real one runs it)."""

    def __init__(self, conn: Any, log: list[str | None]) -> None:
        self._conn, self.log = conn, log

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._conn, name)

        async def call(first: str, *args: Any, **kw: Any) -> Any:
            self.log[0] = f"{name} {first.split()[0] if name.startswith(('execute', 'fetch')) else first}"
            try:
                return await method(first, *args, **kw)
            finally:
                self.log[0] = "between statements"
        return call

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        self.log[0] = "begin"
        async with self._conn.transaction():
            self.log[0] = "between statements"
            yield
            self.log[0] = "commit"
        self.log[0] = None


class _WatchedPool:
    def __init__(self, pool: Any) -> None:
        self._pool = pool
        self.in_flight: list[str | None] = [None]

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[_Watched]:
        async with self._pool.acquire() as conn:
            yield _Watched(conn, self.in_flight)


async def test_the_next_batch_is_prepared_only_while_postgresql_works_on_the_one_before(db: Database) -> None:
    """Prepared during the transaction's short round trips (lock, replay check, begin, commit), the next
    batch made each of them wait a slice with PostgreSQL idle: the preparation stretched the transaction
    instead of overlapping it. Only the COPYs and the upsert (or no transaction at all) leave room."""
    target = await _target(db)
    pool = _WatchedPool(db.pool)
    seen: list[str | None] = []

    class Writer(ev.EvidenceWriter):
        def prepare_rows(self, batch: Sequence[Observation]) -> prep.Prepared:
            seen.append(pool.in_flight[0])
            return super().prepare_rows(batch)

    writer = Writer(pool, "n1", Ed25519PrivateKey.generate())
    sink = InOrder(lambda: writer, slice_rows=20)
    futures: list[asyncio.Future[tuple[int, int]]] = []
    for b in range(4):  # two batches in flight, as the Batcher keeps them (depth 2)
        if len(futures) >= 2:
            await futures[-2]
        futures.append(await sink.submit([encode_observation(_obs(target, ip=f"127.0.{b}.{i}")) for i in range(200)]))
    assert [(await f)[0] for f in futures] == [200] * 4
    during_tx = {s for s in seen if s is not None}
    assert during_tx  # the test exercises the overlap at all
    assert during_tx <= {"copy_to_table observations", "copy_to_table incidents_stage", "fetch WITH",
                         "copy_records_to_table incident_changes"}, during_tx
    async with db.pool.acquire() as conn:
        assert (await verify_ledger(conn)).ok


async def test_the_upsert_looks_up_old_incidents_by_key_never_by_scanning_them_all(db: Database) -> None:
    """The "changed?" check read the old rows through a join the planner made a hash join over a sequential
    scan of all `incidents` while the table is small (every batch read all of it); by primary key, each
    batch reads only its own."""
    target = await _target(db)
    writer = ev.EvidenceWriter(db.pool, "n1", Ed25519PrivateKey.generate())
    first = [_obs(target, ip=f"127.0.{i // 250}.{i % 250}") for i in range(1000)]
    await writer.write(first)
    again = [dataclasses.replace(o, id=_obs(target).id) for o in first[:200]]
    async with db.pool.acquire() as conn, conn.transaction():
        await conn.execute("ANALYZE incidents")
        await conn.execute(ev._STAGE_INCIDENTS)
        await conn.copy_to_table("incidents_stage", columns=ev._INC_STAGE_COLUMNS, format="binary",
                                 source=copy_binary.source(writer.prepare(again).stage))
        plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + ev._UPSERT_INCIDENTS, False))
    assert "Seq Scan on incidents " not in plan, plan
    assert "Index Scan using incidents_pkey on incidents" in plan, plan
