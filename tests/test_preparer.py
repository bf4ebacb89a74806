"""The writer process's preparer (evidence/preparer.py): it prepares what the writer would have, and killed
at any moment it loses and duplicates nothing — the batches it had fail and come again from the spool."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import msgspec
import pytest

from tests.helpers import wait_for
from tests.ledger.test_observations import _obs
from tests.test_writer_process import _ledger_whole, assert_spool_drained, spooled_writer, writer_in_transaction
from tracker_watch.domain.evidence import Grade, Observation, encode_observation
from tracker_watch.evidence.frames import frame
from tracker_watch.evidence.preparer import Preparer, PreparerLost, from_reply, prepared_reply
from tracker_watch.evidence.sinks import decode
from tracker_watch.ledger.db import Database
from tracker_watch.ledger.evidence_prep import FORMAT, prepare


def _batch(n: int, target: int = 1) -> list[Observation]:
    out = [_obs(target, ip=f"127.0.{i // 200}.{i % 200 + 1}", port=1000 + i % 7,
                grade=Grade.HANDSHAKE if i % 3 else Grade.VERIFIED) for i in range(n)]
    return [*out, _obs(target, ip="2001:db8::7"), out[3]]  # an IPv6 peer, and one id twice


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(c) for c in f.read().split()]


def test_the_preparer_sends_what_the_writer_would_have_prepared() -> None:
    batch = _batch(300)
    records = [encode_observation(o) for o in batch] + [b"not a record"]
    reply = msgspec.msgpack.decode(frame(prepared_reply(records, 3600, FORMAT, decode))[4:])  # as it travels
    got, bad = from_reply(reply, records, FORMAT, decode)
    want = prepare(batch, 3600, FORMAT)
    assert got is not None
    assert bad == 1
    assert (got.ids, got.first_at, got.last_at, got.counts) == (want.ids, want.first_at, want.last_at, want.counts)
    assert (got.contents, got.prefixes, got.stage, got.staged) == (want.contents, want.prefixes, want.stage,
                                                                    want.staged)
    assert [o.id for o in got.again()] == [o.id for o in want.again()]  # what a replayed batch folds again
    assert len(got.ids) == 301  # the id sent twice is prepared once
    assert from_reply(prepared_reply([b"junk"], 3600, FORMAT, decode), [b"junk"], FORMAT, decode) == (None, 1)
    reply[6] = reply[6][:-1]  # a content hash short: the reply does not fit its batch, and is never written
    with pytest.raises(PreparerLost):
        from_reply(reply, records, FORMAT, decode)


async def test_a_preparer_killed_with_a_batch_in_hand_fails_that_batch_and_is_started_again() -> None:
    preparer = Preparer(3600, FORMAT, decode)
    records = [encode_observation(o) for o in _batch(50)]
    try:
        assert (await preparer.prepare(records))[0] is not None
        assert preparer.running is not None
        first = preparer.running.proc.pid
        os.kill(first, signal.SIGSTOP)  # it cannot answer: the batch below is in its hands when it dies
        pending = asyncio.create_task(preparer.prepare(records))
        await wait_for(lambda: preparer.running is not None and len(preparer.running.waiting) == 1)
        os.kill(first, signal.SIGKILL)
        with pytest.raises(PreparerLost):
            await pending
        again, bad = await preparer.prepare(records)  # a new preparer process
        assert again is not None
        assert bad == 0
        assert len(again.ids) == 51
        assert preparer.running is not None
        assert preparer.running.proc.pid != first
        assert preparer.starts == 2
    finally:
        await preparer.close()


async def test_preparer_killed_mid_batch_loses_and_duplicates_nothing(
        db: Database, tmp_path: Path, pg_dsn: str, schema: str) -> None:
    n = 10_000
    b, sink, app = await spooled_writer(db, tmp_path, pg_dsn, schema, n)
    b.start()
    await writer_in_transaction(db, app)  # a batch in PostgreSQL, the next being prepared
    writer = sink.proc
    assert writer is not None
    (preparer,) = _children(writer.pid)
    os.kill(preparer, signal.SIGKILL)
    await wait_for(lambda: b.pending == 0, timeout=120)
    assert sink.proc is writer
    assert writer.returncode is None
    assert any(c != preparer for c in _children(writer.pid))  # with a new preparer
    async with db.pool.acquire() as conn:
        await _ledger_whole(conn, n)
    assert await b.stop(timeout=10) == 0
    assert writer.returncode == 0
    assert_spool_drained(tmp_path)
