"""Where PostgreSQL's CPU per observation goes on the evidence path (issue 14, target 1).

One run, the same synthetic observations as bench.ingestion, each measurement in a fresh schema:
  * `writer` — EvidenceWriter.write over all batches on one connection, its backend's CPU charged to the
    statement that was running (nanosecond run time from /proc/<pid>/schedstat: the server is on this
    machine), with the wall time the client waited for each;
  * `copy_*` — the same observation rows, encoded as the writer encodes them (binary COPY, chain columns
    included), COPYed in the same batches into: a bare unpartitioned table (the floor of a COPY); the real
    `observations` table (day partitions, primary key, four more indexes, the targets foreign key, CHECKs);
    and the real table less the foreign key, less the secondary indexes, less every index: the marginal
    cost of each part of the schema;
  * `raw` — bench.ingestion's baseline (copy_records_to_table into a bare table), client and server CPU;
  * EXPLAIN (ANALYZE, BUFFERS) of the incident upsert for one further batch (rolled back).

    python -m bench.ingestion_pg                     # 50,000 observations, batch size 1,000
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import asyncpg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.common import Stopwatch, fresh_schema, pool_for, run, server_dsn, write_result
from bench.ingestion import batches, make_observations, run_raw, seed_targets
from tracker_watch.domain import chain
from tracker_watch.domain.evidence import Observation
from tracker_watch.ledger import copy_binary
from tracker_watch.ledger import evidence as ev
from tracker_watch.ledger.db import Conn


def run_ns(pid: int) -> int:
    """Nanoseconds process `pid` has run on a CPU."""
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0])


class Meter:
    """Backend CPU and client wall per statement label, summed."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.cpu: dict[str, int] = defaultdict(int)
        self.wall: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    @contextmanager
    def __call__(self, label: str) -> Iterator[None]:
        cpu, wall = run_ns(self.pid), time.perf_counter()
        try:
            yield
        finally:
            self.cpu[label] += run_ns(self.pid) - cpu
            self.wall[label] += time.perf_counter() - wall
            self.calls[label] += 1


_LABELS = (("INSERT INTO chain_heads", "lock_head"), ("FOR UPDATE", "lock_head"),
           ("FROM observations WHERE id = ANY", "replay_check"), ("CREATE TEMP TABLE", "stage_create"),
           ("WITH up AS", "incident_upsert"), ("UPDATE chain_heads", "head_update"),
           ("signing_keys", "checkpoint"), ("chain_checkpoints", "checkpoint"))


def label(sql: str) -> str:
    return next((name for text, name in _LABELS if text in sql), "other")


class MeteredConn:
    """The writer's connection, each call metered (the real connection does the work)."""

    def __init__(self, conn: Conn, meter: Meter) -> None:
        self._conn, self._meter = conn, meter

    async def execute(self, sql: str, *args: Any) -> Any:
        with self._meter(label(sql)):
            return await self._conn.execute(sql, *args)

    async def fetch(self, sql: str, *args: Any) -> Any:
        with self._meter(label(sql)):
            return await self._conn.fetch(sql, *args)

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        with self._meter(label(sql)):
            return await self._conn.fetchrow(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        with self._meter(label(sql)):
            return await self._conn.fetchval(sql, *args)

    async def copy_to_table(self, table: str, **kw: Any) -> Any:
        with self._meter(f"copy_{table}"):
            return await self._conn.copy_to_table(table, **kw)

    async def copy_records_to_table(self, table: str, **kw: Any) -> Any:
        with self._meter(f"copy_{table}"):
            return await self._conn.copy_records_to_table(table, **kw)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        with self._meter("begin"):
            tx = self._conn.transaction()
            await tx.start()
        try:
            yield
        except BaseException:
            await tx.rollback()
            raise
        with self._meter("commit"):
            await tx.commit()


class MeteredPool:
    def __init__(self, pool: asyncpg.Pool, meter: Meter) -> None:
        self._pool, self._meter = pool, meter

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[MeteredConn]:
        async with self._pool.acquire() as conn:
            yield MeteredConn(conn, self._meter)


async def run_writer(dsn: str, obs: list[Observation], size: int) -> dict[str, Any]:
    async with fresh_schema(dsn, "pgdec") as schema:
        pool = await pool_for(dsn, schema, size=1)
        try:
            async with pool.acquire() as conn:
                await seed_targets(conn)
            meter = Meter(await pool.fetchval("SELECT pg_backend_pid()"))
            writer = ev.EvidenceWriter(MeteredPool(pool, meter), "bench", Ed25519PrivateKey.generate())
            total = run_ns(meter.pid)
            with Stopwatch() as t:
                for batch in batches(obs, size):
                    await writer.write(batch)
            total = run_ns(meter.pid) - total
            changes = await pool.fetchval("SELECT count(*) FROM incident_changes")
            incidents = await pool.fetchval("SELECT count(*) FROM incidents")
            explain = await explain_upsert(pool, writer, obs[-size:])
        finally:
            await pool.close()
    n = len(obs)
    return {"wall_s": t.wall, "client_cpu_us": t.cpu / n * 1e6, "backend_cpu_us": total / n / 1e3,
            "incident_changes": changes, "incidents": incidents, "explain_upsert": explain,
            "statements": {k: {"backend_cpu_us_per_obs": meter.cpu[k] / n / 1e3,
                               "client_wait_us_per_obs": meter.wall[k] / n * 1e6, "calls": meter.calls[k]}
                           for k in sorted(meter.cpu, key=lambda k: -meter.cpu[k])}}


async def explain_upsert(pool: asyncpg.Pool, writer: ev.EvidenceWriter, batch: list[Observation]) -> list[str]:
    """The upsert's plan for a batch of repeat sightings (new ids, same peers and times), rolled back."""
    import dataclasses
    import uuid

    again = [dataclasses.replace(o, id=uuid.uuid4()) for o in batch]
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            await conn.execute(ev._STAGE_INCIDENTS)
            await conn.copy_to_table("incidents_stage", columns=ev._INC_STAGE_COLUMNS, format="binary",
                                     source=copy_binary.source(writer.prepare(again).stage))
            rows = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS) " + ev._UPSERT_INCIDENTS, False)
        finally:
            await tx.rollback()
    return [r[0] for r in rows]


def copy_buffers(obs: list[Observation], size: int) -> list[bytes]:
    """Each batch's binary COPY buffer, exactly as the writer sends it (chain columns included)."""
    writer = ev.EvidenceWriter(None, "bench", Ed25519PrivateKey.generate())
    out, seq, head = [], 0, chain.GENESIS
    for batch in batches(obs, size):
        p = writer.prepare(batch)
        links = chain.extend("bench", seq, head, p.contents, p.fmt)
        seq, head = links[-1].seq, links[-1].row_hash
        out.append(b"".join([copy_binary.HEADER, *[
            pre + copy_binary.chain_suffix(k.seq, k.content_hash, k.prev_hash, k.row_hash, p.fmt)
            for pre, k in zip(p.prefixes, links, strict=True)], copy_binary.TRAILER]))
    return out


_SECONDARY = ("observations_chain", "observations_ip", "observations_observed_at", "observations_target_time")
COPY_VARIANTS: dict[str, tuple[str, ...]] = {
    "copy_bare_table": ("ALTER TABLE observations RENAME TO observations_real",
                        "CREATE TABLE observations (LIKE observations_real INCLUDING DEFAULTS)"),  # NOT NULLs only
    "copy_bare_table_checks": ("ALTER TABLE observations RENAME TO observations_real",
                               "CREATE TABLE observations (LIKE observations_real INCLUDING DEFAULTS "
                               "INCLUDING CONSTRAINTS)"),
    "copy_real_table": (),
    "copy_real_less_fk": ("ALTER TABLE observations DROP CONSTRAINT observations_target_id_fkey",),
    "copy_real_less_fk_secondary": ("ALTER TABLE observations DROP CONSTRAINT observations_target_id_fkey",
                                    *(f"DROP INDEX {i}" for i in _SECONDARY)),
    "copy_real_less_all_indexes": ("ALTER TABLE observations DROP CONSTRAINT observations_target_id_fkey",
                                   *(f"DROP INDEX {i}" for i in _SECONDARY),
                                   "ALTER TABLE observations DROP CONSTRAINT observations_pkey"),
}


async def run_copy(dsn: str, buffers: list[bytes], n: int, ddl: tuple[str, ...]) -> float:
    """Backend CPU µs per observation of COPYing the buffers, one transaction per batch."""
    async with fresh_schema(dsn, "pgcopy") as schema:
        conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
        try:
            await seed_targets(conn)
            for sql in ddl:
                await conn.execute(sql)
            pid = conn.get_server_pid()
            cpu = run_ns(pid)
            for buf in buffers:
                async with conn.transaction():
                    await conn.copy_to_table("observations", columns=ev.OBS_COLUMNS, format="binary",
                                             source=copy_binary.source(buf))
            cpu = run_ns(pid) - cpu
            assert await conn.fetchval("SELECT count(*) FROM observations") == n
        finally:
            await conn.close()
    return cpu / n / 1e3


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    import bench.ingestion as ing

    obs = make_observations(args.observations)
    buffers = copy_buffers(obs, args.batch_size)
    out: dict[str, Any] = {}
    async with server_dsn() as dsn:
        raw_rate = await run_raw(dsn, obs, args.batch_size)
        out["raw"] = {"obs_per_s": raw_rate, "client_cpu_us": ing.CPU_US[-1], "backend_cpu_us": ing.PG_CPU_US[-1]}
        for name, ddl in COPY_VARIANTS.items():
            out[name] = await run_copy(dsn, buffers, len(obs), ddl)
        out["writer"] = await run_writer(dsn, obs, args.batch_size)
    w = out["writer"]
    print(f"ingestion_pg: {len(obs):,} observations, batch {args.batch_size}")
    raw = out["raw"]
    print(f"  raw copy_records_to_table: {raw['obs_per_s']:,.0f} rows/s, client {raw['client_cpu_us']:.1f}"
          f" µs/row, backend {raw['backend_cpu_us']:.1f} µs/row")
    for name in COPY_VARIANTS:
        print(f"  {name}: backend {out[name]:.1f} µs/row")
    print(f"  writer: {len(obs) / w['wall_s']:,.0f} obs/s, client {w['client_cpu_us']:.1f} µs/obs, backend "
          f"{w['backend_cpu_us']:.1f} µs/obs; {w['incidents']:,} incidents, {w['incident_changes']:,} changes")
    for k, v in w["statements"].items():
        print(f"    {k:24s} backend {v['backend_cpu_us_per_obs']:6.1f} µs/obs, client waited "
              f"{v['client_wait_us_per_obs']:6.1f} µs/obs, {v['calls']} calls")
    print("  EXPLAIN (ANALYZE, BUFFERS) of the upsert, one batch of repeats:")
    print("\n".join("    " + line for line in w["explain_upsert"]))
    write_result("ingestion_pg", {"scale": vars(args), **out})
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.ingestion_pg", description=__doc__.split("\n")[0])
    p.add_argument("--observations", type=int, default=50_000)
    p.add_argument("--batch-size", type=int, default=1000)
    args = p.parse_args(argv)
    run(lambda: main_async(args))


if __name__ == "__main__":
    main()
