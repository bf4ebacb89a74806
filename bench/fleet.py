"""Heartbeat cost of leases per swarm against the previous version's leases per target.

100,000 active targets (one swarm each: the worst case for swarm leases, nothing is shared), 12 nodes
with `node.max_targets` 10,000, on fresh schemas of the same server: the previous version's lease code
(frozen in tests/ledger/legacy_ownership.py) on schema N, this version's on schema N+1. Three settling
rounds, then the median and worst of 36 steady heartbeats; the result is the ratio of the medians, both
measured in the same run.

    python -m bench.fleet                 # 100,000 targets
    python -m bench.fleet --targets 20000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from typing import Any

import asyncpg

from bench.common import analyze_own
from tests.ledger import legacy_ownership
from tracker_watch.ledger import migrate
from tracker_watch.ledger.ownership import Ownership

_FILL = """
INSERT INTO targets (work_id, infohash_v1, input_kind)
SELECT $1, substring(decode(md5(g::text) || md5((g + 1)::text), 'hex') FROM 1 FOR 20), 'hex'
FROM generate_series(1, $2) g
"""


async def _schema(dsn: str, name: str, targets: int, upto: int | None) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await migrate.apply(conn, name, upto=upto)
        await conn.execute(f'SET search_path TO "{name}"')
        holder = await conn.fetchval("INSERT INTO rights_holders (name) VALUES ('A') RETURNING id")
        work = await conn.fetchval("INSERT INTO works (holder_id, title) VALUES ($1, 'W') RETURNING id", holder)
        await conn.execute(_FILL, work, targets)
        await analyze_own(conn)  # not a bare ANALYZE: it walks every schema on a shared server
    finally:
        await conn.close()


async def _beats(dsn: str, schema: str, make: Any) -> tuple[float, float, int]:
    pool = await asyncpg.create_pool(dsn, min_size=2, max_size=12, server_settings={"search_path": schema})
    try:
        nodes = [make(pool, f"n{i}", "bench", 10_000, 30.0, 10.0) for i in range(12)]
        for _ in range(3):
            for node in nodes:
                await node.beat()
        times = []
        for _ in range(3):
            for node in nodes:
                t0 = time.perf_counter()
                await node.beat()
                times.append(time.perf_counter() - t0)
        return statistics.median(times), max(times), sum(len(n.owned) for n in nodes)
    finally:
        await pool.close()


async def main(dsn: str, targets: int) -> None:
    old, new = f"bench_{uuid.uuid4().hex[:8]}", f"bench_{uuid.uuid4().hex[:8]}"
    try:
        await _schema(dsn, old, targets, max(m.version for m in migrate.available() if m.version < 12))
        await _schema(dsn, new, targets, None)
        results = {"per target (N)": await _beats(dsn, old, legacy_ownership.Ownership),
                   "per swarm (N+1)": await _beats(dsn, new, Ownership)}
        for label, (median, worst, held) in results.items():
            print(f"{label:<16} {held} targets held, heartbeat median {median:.3f} s, worst {worst:.3f} s")
        ratio = results["per swarm (N+1)"][0] / results["per target (N)"][0]
        print(f"per swarm / per target (medians): {ratio:.2f}")
    finally:
        conn = await asyncpg.connect(dsn)
        for name in (old, new):
            await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        await conn.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=100_000)
    parser.add_argument("--dsn", default=os.environ.get("TRACKER_WATCH_TEST_DSN",
                                                        "postgresql://postgres@127.0.0.1:5432/test"))
    args = parser.parse_args()
    asyncio.run(main(args.dsn, args.targets))
