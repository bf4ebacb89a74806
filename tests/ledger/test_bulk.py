"""Bulk registration in a fixed number of statements, however many works the list names."""

from __future__ import annotations

from typing import Any

from tracker_watch.domain.targets import parse_target
from tracker_watch.ledger.bulk import register_many
from tracker_watch.ledger.db import Database


async def test_many_works_take_a_fixed_number_of_statements(db: Database) -> None:
    items = [(parse_target(f"{i + 1:040x}"), f"Studio {i % 3}", f"Work {i}") for i in range(600)]
    statements: list[Any] = []
    async with db.pool.acquire() as conn, conn.transaction():
        conn.add_query_logger(statements.append)
        ids, created = await register_many(conn, items)
        conn.remove_query_logger(statements.append)
    # it was two round trips per distinct work: 1,200 statements here
    assert len(statements) <= 10, len(statements)
    assert created == 600
    assert len(set(ids)) == 600
    rows = await db.pool.fetch("SELECT t.id, h.name, w.title FROM targets t JOIN works w ON w.id = t.work_id "
                               "JOIN rights_holders h ON h.id = w.holder_id")
    placed = {r["id"]: (r["name"], r["title"]) for r in rows}
    assert [placed[i] for i in ids] == [(h, w) for _, h, w in items]


async def test_repeat_and_existing_works_are_found_not_doubled(db: Database) -> None:
    items = [(parse_target(f"{i + 1:040x}"), "Studio", f"Work {i % 7}") for i in range(50)]
    async with db.pool.acquire() as conn, conn.transaction():
        first, created = await register_many(conn, items)
    async with db.pool.acquire() as conn, conn.transaction():
        again, created_again = await register_many(conn, [*items, (parse_target("f" * 40), "Studio", "Work 8")])
    assert (created, created_again) == (50, 1)
    assert again[:50] == first
    assert await db.pool.fetchval("SELECT count(*) FROM works") == 8
    assert await db.pool.fetchval("SELECT count(*) FROM rights_holders WHERE name = 'Studio'") == 1
