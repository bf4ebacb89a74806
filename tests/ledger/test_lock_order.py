"""No lock cycles between the evidence writers of several nodes and the strike ledger (issue 14, target 6).

Writers upsert incidents (INSERT … ON CONFLICT DO UPDATE); the ledger puts a new strike's incidents on legal
hold (UPDATE incidents). Both lock incident rows; if they took them in different orders, two transactions
could each hold a row the other waits for, and PostgreSQL would abort one with `deadlock detected`. Here
four nodes' writers hammer the same incidents, each batch in its own shuffled order, while the ledger keeps
issuing strikes on them; no transaction may die of a deadlock, and the server's log (when this process can
read it) must show none for our connections.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.conftest import SettingsFactory
from tracker_watch.domain.evidence import Grade, Observation, Source
from tracker_watch.domain.targets import parse_target
from tracker_watch.ledger.db import Database
from tracker_watch.ledger.evidence import EvidenceWriter
from tracker_watch.ledger.strikes import StrikeLedger
from tracker_watch.ledger.targets import TargetStore

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
NODES = 4
ROUNDS = 4
ADDRESSES = 120  # per round: new subjects, so every round's tick issues strikes and holds their incidents
BATCHES = 3  # per writer and round, each over all of the round's addresses in a shuffled order
SERVER_LOG = Path("/var/log/postgresql/postgresql-15-main.log")


def _observation(target: int, ip: str, at: datetime, node: str) -> Observation:
    return Observation(target_id=target, infohash_v1=b"\x11" * 20, infohash_v2=None, observed_at=at, ip=ip,
                       port=6881, source=Source.TRACKER, grade=Grade.VERIFIED, node=node, version="tw/test",
                       piece_index=0, piece_bytes=16384, pieces_verified=1, bytes_verified=16384)


def _log_size() -> int | None:
    try:
        with SERVER_LOG.open("rb") as f:
            return f.seek(0, 2)
    except OSError:
        return None


def _deadlocks_in_log(since: int | None, pids: set[int]) -> list[str]:
    """`deadlock detected` lines the server logged for our backends since `since` (empty if unreadable)."""
    if since is None:
        return []
    with SERVER_LOG.open("rb") as f:
        f.seek(since)
        text = f.read().decode("utf-8", "replace")
    found = []
    for line in text.splitlines():
        m = re.search(r"\[(\d+)\].*deadlock detected", line)
        if m and int(m.group(1)) in pids:
            found.append(line)
    return found


async def test_writers_of_several_nodes_and_the_ledger_never_deadlock(make_settings: SettingsFactory) -> None:
    settings = make_settings(policy={"test_country": "KZ", "jurisdictions": ["KZ"]})
    db = Database(settings)
    await db.start()
    row, _ = await TargetStore(db.pool).register(parse_target("11" * 20), "Studio", "Film", actor="test")
    pids: set[int] = set()

    async def remember(conn: asyncpg.Connection) -> None:
        pids.add(await conn.fetchval("SELECT pg_backend_pid()"))

    async def pool() -> asyncpg.Pool:
        p = await asyncpg.create_pool(settings.database.dsn, min_size=1, max_size=2, init=remember,
                                      server_settings={"search_path": settings.database.schema})
        assert p is not None
        return p

    pools = [await pool() for _ in range(NODES + 1)]
    deadlocks: list[str] = []
    log_from = _log_size()
    written = 0

    async def node(i: int) -> None:
        nonlocal written
        rng = random.Random(i)
        writer = EvidenceWriter(pools[i], f"n{i}", Ed25519PrivateKey.generate())
        for r in range(ROUNDS):
            ips = [f"10.{r}.{a // 250}.{a % 250 + 1}" for a in range(ADDRESSES)]
            for b in range(BATCHES):
                rng.shuffle(ips)
                at = T0 + timedelta(minutes=r * 10 + b, seconds=i)
                batch = [_observation(row.id, ip, at, f"n{i}") for ip in ips]
                while True:  # a batch that dies is retried, as the spool would
                    try:
                        n = await writer.write(batch)  # (not `written += await …`: that loses updates)
                        written += n
                        break
                    except asyncpg.DeadlockDetectedError as exc:
                        deadlocks.append(f"writer n{i}: {exc}")

    async def ledger(done: asyncio.Event) -> int:
        strikes = StrikeLedger(pools[NODES], settings)
        created = 0
        while True:
            finished = done.is_set()
            try:
                report = await strikes.tick(batch=200)
                created += report.created
            except asyncpg.DeadlockDetectedError as exc:
                deadlocks.append(f"ledger: {exc}")
            if finished:
                return created
            await asyncio.sleep(0)

    try:
        done = asyncio.Event()
        ticking = asyncio.create_task(ledger(done))
        await asyncio.gather(*(node(i) for i in range(NODES)))
        done.set()
        created = await ticking
        # the work really overlapped: every observation stored once, every round's subjects struck and held
        assert written == NODES * ROUNDS * BATCHES * ADDRESSES
        assert created == ROUNDS * ADDRESSES
        held = await db.pool.fetchval("SELECT count(*) FROM incidents WHERE legal_hold")
        assert held == ROUNDS * ADDRESSES
    finally:
        for p in pools:
            await p.close()
        await db.stop()
    assert not deadlocks, f"{len(deadlocks)} deadlocks: {Counter(d.split(':')[0] for d in deadlocks)}; {deadlocks[0]}"
    assert _deadlocks_in_log(log_from, pids) == []
