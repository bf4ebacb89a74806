"""`tracker-watch nodes`, `node drain`, `node undrain` as an operator types them (real processes, real database)."""

from __future__ import annotations

import asyncpg

from tests.test_cli import env, tw  # noqa: F401  (env is a fixture)
from tracker_watch.ledger.db import Database
from tracker_watch.ledger.ownership import Ownership


async def test_nodes_drain_and_undrain(env: dict[str, str], db: Database, pg_dsn: str,  # noqa: F811
                                       schema: str) -> None:
    empty = tw("nodes", env=env)
    assert empty.returncode == 0, empty.stderr
    assert "no node has started yet" in empty.stdout
    node = Ownership(db.pool, "node-7", "tw/9.9", 50, ttl_s=30.0, heartbeat_s=5.0, spool_depth=lambda: (42, 3 * 1024))
    await node.beat()
    listed = tw("nodes", env=env)
    assert listed.returncode == 0, listed.stderr
    line = next(x for x in listed.stdout.splitlines() if x.startswith("node-7"))
    assert line.split()[1:3] == ["alive", "tw/9.9"]
    assert "42 (3.0 KiB)" in line
    assert "/ 50" in line
    missing = tw("node", "drain", "ghost", env=env)
    assert missing.returncode == 2
    assert "no node 'ghost'" in missing.stderr
    drained = tw("node", "drain", "node-7", env=env)
    assert drained.returncode == 0, drained.stderr
    assert (await node.beat()).drained
    assert "drained" in tw("nodes", env=env).stdout
    assert tw("node", "undrain", "node-7", env=env).returncode == 0
    assert not (await node.beat()).drained
    conn = await asyncpg.connect(pg_dsn)
    try:
        actions = [r["action"] for r in await conn.fetch(
            f'SELECT action FROM "{schema}".audit_log WHERE object = $1 ORDER BY id', "node:node-7")]
    finally:
        await conn.close()
    assert actions == ["node.drain", "node.undrain"]
