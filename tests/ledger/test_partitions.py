"""Observations partitioned by day: no insert fails for want of a partition, the DEFAULT partition's rows
move to their days, retention rewrites whole months, and the chain verifies throughout."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, date, datetime, timedelta

import asyncpg
import pytest

from tests.ledger.test_observations import _obs, _target, writer
from tracker_watch.domain.evidence import Grade, Observation, utc_now_ms
from tracker_watch.ledger import partitions
from tracker_watch.ledger.db import Database
from tracker_watch.ledger.retention import purge
from tracker_watch.ledger.verify import verify_ledger

LONG_AGO = datetime(2024, 3, 1, tzinfo=UTC)  # a month no partition was made for


async def children(db: Database) -> list[str]:
    return sorted(r["relname"] for r in await db.pool.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'observations'::regclass"))


async def verified(db: Database) -> bool:
    async with db.pool.acquire() as conn:
        return (await verify_ledger(conn)).ok


def at(o: Observation, when: datetime) -> Observation:
    return dataclasses.replace(o, observed_at=when)


async def test_days_ahead_exist_and_ensure_is_idempotent(db: Database) -> None:
    today = datetime.now(UTC).date()
    names = await children(db)
    for n in range(-1, partitions.AHEAD_DAYS + 1):
        assert partitions.day_name(today + timedelta(days=n)) in names
    assert "observations_default" in names
    later = datetime.now(UTC) + timedelta(days=30)
    async with db.pool.acquire() as c1, db.pool.acquire() as c2:  # two nodes at once: one creates, one finds
        made = await asyncio.gather(partitions.ensure(c1, later), partitions.ensure(c2, later))
    assert sorted(len(m) for m in made) == [0, 9]
    assert partitions.day_name(later.date() + timedelta(days=7)) in await children(db)


async def test_a_day_without_partition_lands_in_default_then_moves_to_its_day(db: Database) -> None:
    target = await _target(db)
    old = [at(_obs(target, port=7000 + i), LONG_AGO + timedelta(hours=i)) for i in range(30)]
    assert await writer(db).write(old) == 30  # never a failed insert for want of a partition
    assert await db.pool.fetchval("SELECT count(*) FROM observations_default") == 30
    assert await writer(db).write(old) == 0  # the replay is still recognised in the DEFAULT partition
    async with db.pool.acquire() as conn:
        created = await partitions.ensure(conn)
    assert created == ["observations_p20240301", "observations_p20240302"]
    assert await db.pool.fetchval("SELECT count(*) FROM observations_default") == 0
    assert await db.pool.fetchval("SELECT count(*) FROM observations_p20240301") == 24
    assert await db.pool.fetchval("SELECT count(*) FROM observations") == 30
    assert await writer(db).write(old) == 0  # and in its day
    assert await verified(db)


async def test_retention_rewrites_a_past_month_and_keeps_held_rows(db: Database) -> None:
    target = await _target(db)
    rows = [at(_obs(target, ip=f"127.0.0.{11 + i % 3}", port=6881, grade=Grade.VERIFIED),
               LONG_AGO + timedelta(days=i // 3, hours=i % 5)) for i in range(30)]  # 10 days of March 2024
    recent = [_obs(target, ip="127.0.0.99", port=7)]
    w = writer(db)
    await w.write(rows)
    await w.write(recent)
    async with db.pool.acquire() as conn:
        await partitions.ensure(conn)
        await conn.execute("UPDATE incidents SET legal_hold = true WHERE host(ip) = '127.0.0.11'")
        dry = await purge(conn, utc_now_ms() - timedelta(days=1), 86400, dry_run=True)
        assert dry.months_compacted == 1
        assert "observations_p20240305" in await children(db)
        done = await purge(conn, utc_now_ms() - timedelta(days=1), 86400, dry_run=False)
    assert (done.observations, done.months_compacted) == (20, 1)
    names = await children(db)
    assert "observations_p202403" in names
    assert not [n for n in names if n.startswith("observations_p202403") and len(n) > len("observations_p202403")]
    assert await db.pool.fetchval("SELECT count(*) FROM observations") == 31  # nothing lost
    assert await db.pool.fetchval("SELECT count(*) FROM observations_p202403") == 30
    kept = await db.pool.fetch("SELECT DISTINCT host(ip) AS ip FROM observations WHERE redacted_at IS NULL ORDER BY 1")
    assert [r["ip"] for r in kept] == ["127.0.0.11", "127.0.0.99"]  # held, and too recent
    assert await db.pool.fetchval("SELECT count(*) FROM observations WHERE redacted_at IS NOT NULL "
                                  "AND (ip IS NOT NULL OR port IS NOT NULL OR peer_id IS NOT NULL)") == 0
    async with db.pool.acquire() as conn:
        report = await verify_ledger(conn)
    assert report.ok
    assert report.nodes[0].redacted >= 20
    # the rewritten month is as append-only as any partition
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await db.pool.execute("UPDATE observations SET grade = 'listed' WHERE observed_at < $1",
                              LONG_AGO + timedelta(days=31))
    for table in ("observations_p202403", partitions.day_name(date.today()), "observations_default"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await db.pool.execute(f"TRUNCATE {table}")
    # a second purge finds nothing more to rewrite
    async with db.pool.acquire() as conn:
        again = await purge(conn, utc_now_ms() - timedelta(days=1), 86400, dry_run=False)
    assert (again.observations, again.months_compacted) == (0, 0)


async def test_late_evidence_for_a_compacted_month_is_stored_there(db: Database) -> None:
    target = await _target(db)
    w = writer(db)
    await w.write([at(_obs(target, port=1), LONG_AGO)])
    async with db.pool.acquire() as conn:
        await partitions.ensure(conn)
        await purge(conn, utc_now_ms() - timedelta(days=1), 86400, dry_run=False)
    assert await w.write([at(_obs(target, port=2), LONG_AGO + timedelta(days=3))]) == 1
    assert await db.pool.fetchval("SELECT count(*) FROM observations_p202403") == 2
    assert await db.pool.fetchval("SELECT count(*) FROM observations_default") == 0
    assert await verified(db)
