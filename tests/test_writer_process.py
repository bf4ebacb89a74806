"""The evidence writer process (collector.writer = "process"): killed mid-batch it loses and duplicates
nothing, and the daemon's evidence flows through it end to end (and through the in-loop writer alike)."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import asyncpg
import pytest
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.conftest import SettingsFactory
from tests.helpers import wait_for, wait_for_async
from tests.ledger.test_observations import _obs, _target
from tracker_watch import log, metrics
from tracker_watch.config import LogSettings
from tracker_watch.daemon import Daemon
from tracker_watch.demo.swarm import LocalSwarm
from tracker_watch.domain.evidence import Grade, Observation
from tracker_watch.domain.targets import parse_target
from tracker_watch.evidence.batcher import Batcher
from tracker_watch.evidence.process_sink import ProcessSink, writer_config
from tracker_watch.evidence.spool import Spool
from tracker_watch.ledger.db import Conn, Database
from tracker_watch.ledger.targets import TargetStore
from tracker_watch.ledger.verify import verify_ledger


async def _not_used(batch: Sequence[Observation]) -> int:
    raise AssertionError("the process sink writes, not this")


def _observed() -> float:
    return sum(s.value for m in metrics.OBSERVATIONS.collect() for s in m.samples if s.name.endswith("_total"))


async def _ledger_whole(conn: Conn, expected: int) -> None:
    assert await conn.fetchval("SELECT count(*) FROM observations") == expected
    assert await conn.fetchval("SELECT count(DISTINCT id) FROM observations") == expected
    assert await conn.fetchval("SELECT coalesce(sum(observations), 0) FROM incidents") == expected
    report = await verify_ledger(conn)  # what `tracker-watch ledger verify` runs
    assert report.ok, report


async def spooled_writer(db: Database, tmp_path: Path, pg_dsn: str, schema: str,
                         n: int) -> tuple[Batcher, ProcessSink, str]:
    """A batcher writing through a writer process, with n observations spooled and not started; and the
    writer connection's application name (this test's, among every other test's on the server)."""
    target = await _target(db)
    spool = Spool(tmp_path / "spool", 2**28, segment_bytes=2**18)
    spool.open()
    app = f"tw-test-{schema}"
    sink = ProcessSink()
    sink.connect(writer_config(pg_dsn, schema, "n1", Ed25519PrivateKey.generate().private_bytes_raw(), 86400,
                               10_000, 60.0, 30.0, "json", "warning") | {"application_name": app})
    b = Batcher(_not_used, spool, batch_size=1000, flush_interval_s=0.05, sink=sink, depth=2)
    for i in range(n):
        b.put(_obs(target, ip=f"127.0.{i // 200}.{i % 200 + 1}", port=1000 + i % 7,
                   grade=Grade.HANDSHAKE if i % 3 else Grade.ADVERTISED))
    return b, sink, app


async def writer_in_transaction(db: Database, app: str) -> None:
    """Until the writer connection `app` has a transaction open (a batch is in PostgreSQL)."""
    async def in_transaction() -> bool:
        return bool(await db.pool.fetchval("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 "
                                           "AND xact_start IS NOT NULL", app))

    await wait_for_async(in_transaction, timeout=60, step=0.01)


def assert_spool_drained(tmp_path: Path) -> None:
    """The cursor on disk says: everything is in the database."""
    again = Spool(tmp_path / "spool", 2**28, segment_bytes=2**18)
    again.open()
    try:
        assert again.pending_records == 0
    finally:
        again.close()


async def test_writer_process_killed_mid_batch_loses_and_duplicates_nothing(
        db: Database, tmp_path: Path, pg_dsn: str, schema: str) -> None:
    n = 10_000
    b, sink, app = await spooled_writer(db, tmp_path, pg_dsn, schema, n)
    exits, observed = metrics.WRITER_PROCESS_EXITS._value.get(), _observed()
    b.start()
    await writer_in_transaction(db, app)  # a batch is in PostgreSQL: kill its writer
    first = sink.proc
    assert first is not None
    os.kill(first.pid, signal.SIGKILL)
    await wait_for(lambda: b.pending == 0, timeout=120)
    assert sink.proc is not None
    assert sink.proc is not first  # a new writer process took over
    assert metrics.WRITER_PROCESS_EXITS._value.get() == exits + 1
    assert b.failures >= 1
    async with db.pool.acquire() as conn:
        await _ledger_whole(conn, n)
    # the daemon counted what the writers reported stored (a batch committed but not acknowledged before the
    # kill is stored once and counted by nobody: never more than stored)
    assert n - 1000 <= _observed() - observed <= n
    assert await b.stop(timeout=10) == 0
    assert sink.proc.returncode == 0  # asked to end: finished what it had and exited
    assert_spool_drained(tmp_path)


@pytest.mark.parametrize("writer", ["process", "task"])
async def test_daemon_evidence_flows_through_its_writer(make_settings: SettingsFactory, local_swarm: LocalSwarm,
                                                        pg_dsn: str, schema: str, writer: str) -> None:
    daemon = Daemon(make_settings(collector={"writer": writer, "flush_interval_s": 0.2}))
    observed = _observed()
    await daemon.start()
    try:
        assert daemon.batcher is not None
        assert isinstance(daemon.batcher.sink, ProcessSink) == (writer == "process")
        await TargetStore(daemon.db.pool).register(parse_target(local_swarm.content.magnet([local_swarm.tracker.url])),
                                                   "Studio", "Film", actor="test")

        async def verified_stored() -> bool:
            ips = {r[0] for r in await daemon.db.pool.fetch(
                "SELECT DISTINCT host(ip) FROM observations WHERE grade = 'verified'")}
            return ips >= {p.ip for p in local_swarm.peers}

        await wait_for_async(verified_stored, timeout=90)
        if isinstance(daemon.batcher.sink, ProcessSink):
            assert daemon.batcher.sink.proc is not None
            assert daemon.batcher.sink.proc.returncode is None
        assert _observed() > observed  # the writer's counts reach this process's /metrics
    finally:
        await daemon.stop()
    assert daemon.batcher.pending == 0
    if isinstance(daemon.batcher.sink, ProcessSink):
        assert daemon.batcher.sink.proc is not None
        assert daemon.batcher.sink.proc.returncode == 0
    conn = await asyncpg.connect(pg_dsn, server_settings={"search_path": schema})
    try:
        await _ledger_whole(conn, daemon.batcher.written)
    finally:
        await conn.close()


async def test_the_writer_logs_where_the_daemon_logs(db: Database, tmp_path: Path, pg_dsn: str, schema: str,
                                                     capfd: pytest.CaptureFixture[str]) -> None:
    """The demo logs to stderr and prints its table on stdout: the writer process's lines must not land there."""
    target = await _target(db)
    spool = Spool(tmp_path / "spool", 2**28, segment_bytes=2**18)
    spool.open()
    saved = structlog.get_config()
    log.configure(LogSettings("json", "info"), node="n1", stream=sys.stderr)
    try:
        sink = ProcessSink()
        sink.connect(writer_config(pg_dsn, schema, "n1", Ed25519PrivateKey.generate().private_bytes_raw(), 86400,
                                   10_000, 60.0, 30.0, "json", "info"))
        b = Batcher(_not_used, spool, batch_size=10, flush_interval_s=0.05, sink=sink, depth=2)
        b.put(_obs(target, ip="127.0.0.9", port=1000, grade=Grade.HANDSHAKE))
        b.start()
        await wait_for(lambda: b.pending == 0, timeout=60)
        assert await b.stop(timeout=10) == 0
    finally:
        log.configure(LogSettings("json", "warning"))  # the stream back to stdout
        structlog.configure(**saved)  # and structlog as it was
    out, err = capfd.readouterr()
    assert "writer_process_started" in err
    assert "writer_process_started" not in out
