from __future__ import annotations

import dataclasses
from pathlib import Path

from tests.ledger.old_schema import register_target
from tracker_watch.demo.swarm import make_content
from tracker_watch.domain.targets import parse_target
from tracker_watch.ledger.db import Database
from tracker_watch.ledger.targets import TargetStore


async def test_register_is_idempotent_per_work(db: Database) -> None:
    store = TargetStore(db.pool)
    spec = parse_target("d" * 40)
    row, created = await store.register(spec, "Studio A", "Film", actor="test")
    again, created_again = await store.register(spec, "Studio A", "Film", actor="test")
    other, created_other = await store.register(spec, "Studio B", "Film", actor="test")
    assert (created, created_again, created_other) == (True, False, True)
    assert again.id == row.id
    assert other.id != row.id  # two holders may claim one swarm; each keeps its own evidence
    audit = await db.pool.fetch("SELECT actor, action FROM audit_log ORDER BY id")
    assert [(a["actor"], a["action"]) for a in audit] == [("test", "target.register")] * 2


async def test_torrent_registration_keeps_metadata(db: Database, tmp_path: Path) -> None:
    content = make_content(tmp_path, size=100_000, piece_length=16384)
    row, _ = await TargetStore(db.pool).register(parse_target(content.torrent), "H", "W", actor="test")
    assert row.info is not None
    assert row.num_pieces == 7
    assert row.infohash_v2 == content.v2


async def test_changes_are_seen_by_revision(db: Database) -> None:
    store = TargetStore(db.pool)
    row, _ = await store.register(parse_target("e" * 40), "H", "W", actor="test")
    assert [r.id for r in await store.changed_since(0)] == [row.id]
    assert await store.changed_since(row.revision) == []
    assert await store.set_status(row.id, "paused", actor="test")
    changed = await store.changed_since(row.revision)
    assert [(r.id, r.status) for r in changed] == [(row.id, "paused")]
    assert await store.active_ids() == {}


async def test_the_upgrade_tests_registration_at_the_newest_version_is_the_stores(db: Database,
                                                                                  tmp_path: Path) -> None:
    """tests/ledger/old_schema.py registers with the columns of the schema under test; at the newest version
    that must be all TargetStore.register writes (a column it starts writing goes into ADDED_IN too)."""
    content = make_content(tmp_path, size=100_000, piece_length=16384)
    store = TargetStore(db.pool)
    inputs: list[str | bytes] = [content.torrent,
                                 content.magnet(["http://127.0.0.1:1/announce"]) + "&x.pe=127.0.0.9:6881"]
    for i, what in enumerate(inputs):
        spec = parse_target(what)
        ours, _ = await store.register(spec, "Studio", f"Film {i}", actor="test")
        theirs = await store.get(await register_target(db.pool, spec, "Studio", f"Sequel {i}"))
        assert theirs is not None
        different = {"id", "work_id", "work", "created_at", "revision"}
        assert {k: v for k, v in dataclasses.asdict(theirs).items() if k not in different} \
            == {k: v for k, v in dataclasses.asdict(ours).items() if k not in different}
        assert ours.peer_hints == spec.peer_hints
        assert await db.pool.fetchval("SELECT count(DISTINCT (piece_length, metadata_at IS NULL)) FROM targets "
                                      "WHERE id = ANY($1::bigint[])", [ours.id, theirs.id]) == 1
