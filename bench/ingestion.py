"""Ingestion benchmark: observations per second through the real pipeline into PostgreSQL.

Three paths over the same synthetic observations (a realistic mix of grades; repeated sightings of the
same peers, so incidents are upserted as well as created), each into its own fresh schema:
  * pipeline — Batcher.put (encode, disk spool) → Batcher writer task → EvidenceWriter.write (dedup by
    id, hash chain, COPY, incident upsert, incident-change chain rows, checkpoints): what the daemon runs
    after the collector has graded a peer;
  * pipeline_overlap — the same with the writer task of `collector.writer = "task"` (sinks.InOrder, two
    batches in flight: the next prepared in slices while one is in PostgreSQL);
  * pipeline_process — the same with the writer process of `collector.writer = "process"` (its CPU and its
    PostgreSQL backend's are read from /proc too; it is started before the clock, its imports are not
    ingestion);
  * writer — EvidenceWriter.write called directly with the same batches: the pipeline minus the spool;
  * raw (baseline) — asyncpg copy_records_to_table of the same rows, same batch size, into a bare table
    with the observation columns and no index, constraint, trigger or chain.
Targets (issue 7, issue 14): pipeline ≥ 0.5 × raw, and ≥ 20,000 observations/s.

For every path the PostgreSQL backend's CPU per observation is read from /proc (the server runs on this
machine), next to this process's: on a busy machine CPU time is steady where wall time is not.

With --levers, each change of issue 14 is measured against its absence in the same run: the writer with
chain format 1 (canonical JSON), with an incident change chained on every touch, and on the schema before
migration 0014 (incident updates not HOT, one more observations index); and, as CPU time of
this process per observation (steady on a busy machine, unlike wall time), content hashing in format 1
vs 2 and the spool record in JSON vs MessagePack.

    python -m bench.ingestion                       # 50,000 observations, 3 runs
    python -m bench.ingestion --levers              # + the variants above
    python -m bench.ingestion --observations 500000 --batch-size 5000
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.common import Stopwatch, fresh_schema, median, pool_for, run, server_dsn, write_result
from tracker_watch.domain import chain, chain_v2, evidence
from tracker_watch.domain.evidence import (
    OBSERVATION_FIELDS,
    Grade,
    Observation,
    Source,
    decode_observation,
    encode_observation,
    encode_observation_v1,
    utc_now_ms,
)
from tracker_watch.evidence.batcher import Batcher
from tracker_watch.evidence.process_sink import ProcessSink, writer_config
from tracker_watch.evidence.sinks import InOrder, Sink
from tracker_watch.evidence.spool import Spool
from tracker_watch.ledger.db import Conn
from tracker_watch.ledger.evidence import EvidenceWriter
from tracker_watch.ledger.evidence_prep import content_hashes

TARGETS = 100
# what the collector emits over a swarm's life: many listed/handshake rows, fewer advertised, some verified
GRADES = [Grade.LISTED] * 4 + [Grade.HANDSHAKE] * 2 + [Grade.ADVERTISED] * 3 + [Grade.VERIFIED]


def make_observations(n: int, seed: int = 3) -> list[Observation]:
    rng = random.Random(seed)
    now, peers = utc_now_ms(), max(1, n // 4)  # each peer is seen ~4 times: incidents get upserted
    out = []
    for i in range(n):
        peer = rng.randrange(peers)
        grade = rng.choice(GRADES)
        verified = grade is Grade.VERIFIED
        out.append(Observation(
            target_id=peer % TARGETS + 1, infohash_v1=(peer % TARGETS + 1).to_bytes(20, "big"), infohash_v2=None,
            observed_at=now + timedelta(milliseconds=i), ip=f"10.{peer >> 16 & 255}.{peer >> 8 & 255}.{peer & 255}",
            port=6881 + peer % 1000, source=Source.TRACKER, grade=grade, node="bench", version="bench",
            tracker_url="http://127.0.0.1:6969/announce", peer_id=rng.randbytes(20), client="libtorrent/2.1.1.0",
            pieces_advertised=32 if grade.rank >= 2 else None, num_pieces=32, pieces_verified=int(verified),
            bytes_verified=65536 * verified, our_ip="127.0.0.2", our_port=6881,
            piece_index=peer % 32 if verified else None, piece_bytes=65536 if verified else None,
            piece_sha1=rng.randbytes(20) if verified else None, piece_sha256=rng.randbytes(32) if verified else None))
    return out


async def seed_targets(conn: Conn) -> None:
    holder = await conn.fetchval("INSERT INTO rights_holders (name) VALUES ('Bench') RETURNING id")
    work = await conn.fetchval("INSERT INTO works (holder_id, title) VALUES ($1, 'w') RETURNING id", holder)
    await conn.copy_records_to_table("targets", columns=("work_id", "infohash_v1", "input_kind"),
                                     records=[(work, i.to_bytes(20, "big"), "hex") for i in range(1, TARGETS + 1)])


def batches(obs: list[Observation], size: int) -> list[list[Observation]]:
    return [obs[i:i + size] for i in range(0, len(obs), size)]


async def run_raw(dsn: str, obs: list[Observation], size: int) -> float:
    async with fresh_schema(dsn, "raw", migrated=False) as schema:
        conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
        try:
            await conn.execute("""CREATE TABLE observations (id uuid, target_id bigint, infohash_v1 bytea,
                infohash_v2 bytea, observed_at timestamptz, ip inet, port integer, source text, tracker_url text,
                grade text, peer_id bytea, client text, pieces_advertised integer, num_pieces integer,
                pieces_verified integer, bytes_verified bigint, node text, version text, our_ip inet,
                our_port integer, piece_index integer, piece_bytes integer, piece_sha1 bytea, piece_sha256 bytea)""")
            server = backend_cpu(conn.get_server_pid())
            with Stopwatch() as t:
                for batch in batches(obs, size):
                    records = [tuple(getattr(o, f) for f in OBSERVATION_FIELDS) for o in batch]
                    await conn.copy_records_to_table("observations", records=records, columns=OBSERVATION_FIELDS)
            server = backend_cpu(conn.get_server_pid()) - server
            assert await conn.fetchval("SELECT count(*) FROM observations") == len(obs)
        finally:
            await conn.close()
    return _rate(obs, t, server)


def _rate(obs: list[Observation], t: Stopwatch, server_cpu: float = float("nan")) -> float:
    """Observations per second of wall time; this process's and the server backend's CPU µs per observation
    go to CPU_US and PG_CPU_US."""
    CPU_US.append(t.cpu / len(obs) * 1e6)
    PG_CPU_US.append(server_cpu / len(obs) * 1e6)
    return len(obs) / t.wall


CPU_US: list[float] = []  # Python CPU per observation of each measurement, in order
PG_CPU_US: list[float] = []  # the PostgreSQL backend's CPU per observation of each measurement, in order


def backend_cpu(pid: int) -> float:
    """CPU seconds a PostgreSQL backend of this machine has used (NaN when it is not ours to read)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# the schema as it was before migration 0014, for --levers: last_seen indexed (no HOT update), full pages
PRE_0014 = ("CREATE INDEX incidents_last_seen ON incidents (last_seen)", "ALTER TABLE incidents RESET (fillfactor)",
            "DROP INDEX incidents_retention",
            "CREATE INDEX observations_target_ip ON observations (target_id, ip, observed_at)")


async def hot_updates(pool: asyncpg.Pool) -> tuple[int, int]:
    """(updates, heap-only updates) of `incidents` so far, once the writer's counters reach the server."""
    await pool.execute("SELECT pg_stat_force_next_flush()")
    row: tuple[int, int] = (0, 0)
    for _ in range(20):
        await asyncio.sleep(0.1)
        async with pool.acquire() as conn:
            await conn.execute("SELECT pg_stat_clear_snapshot()")
            found = await conn.fetchrow("SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables "
                                        "WHERE relid = 'incidents'::regclass")
        if found is not None and found[0] > 0:
            row = (int(found[0]), int(found[1]))
            break
    return row


async def run_writer(dsn: str, obs: list[Observation], size: int, schema_sql: tuple[str, ...] = (),
                     **variant: Any) -> float:
    async with fresh_schema(dsn, "writer") as schema:
        pool = await pool_for(dsn, schema, size=1)  # one backend: its CPU is the server's share
        try:
            async with pool.acquire() as conn:
                await seed_targets(conn)
                for sql in schema_sql:
                    await conn.execute(sql)
            pid = await pool.fetchval("SELECT pg_backend_pid()")
            writer = EvidenceWriter(pool, "bench", Ed25519PrivateKey.generate(), **variant)
            server = backend_cpu(pid)
            with Stopwatch() as t:
                for batch in batches(obs, size):
                    await writer.write(batch)
            server = backend_cpu(pid) - server
            assert await pool.fetchval("SELECT count(*) FROM observations") == len(obs)
            key = repr(sorted(variant.items())) + (" pre-0014" if schema_sql else "")
            CHANGES[key] = await pool.fetchval("SELECT count(*) FROM incident_changes")
            HOT[key] = await hot_updates(pool)
        finally:
            await pool.close()
    return _rate(obs, t, server)


CHANGES: dict[str, int] = {}  # incident-change rows a writer variant chained
HOT: dict[str, tuple[int, int]] = {}  # (updates, heap-only updates) of incidents, per writer variant


def cpu_parts(obs: list[Observation]) -> dict[str, float]:
    """CPU µs per observation of the levers that are pure CPU, best of 3."""
    values = [tuple(getattr(o, f) for f in OBSERVATION_FIELDS) for o in obs]
    v1, v2 = [encode_observation_v1(o) for o in obs], [encode_observation(o) for o in obs]
    parts: dict[str, Callable[[], object]] = {"content_hash_v1": lambda: content_hashes("observation", values, 1),
             "content_hash_v2": lambda: content_hashes("observation", values, 2),
             "spool_json_v1": lambda: [decode_observation(encode_observation_v1(o)) for o in obs],
             "spool_msgpack_v2": lambda: [decode_observation(encode_observation(o)) for o in obs],
             # the two levers of the writer's CPU in the second pass, against what they replaced
             "content_hash_v2_reference_loop": lambda: [hashlib.sha256(chain_v2.encode_values_reference(
                 "observation", v)).digest() for v in values],
             "spool_msgpack_v2_dataclass_init": lambda: [Observation(*evidence._decoder.decode(
                 memoryview(encode_observation(o))[2:])) for o in obs]}
    out = {}
    for name, fn in parts.items():
        best = float("inf")
        for _ in range(3):
            started = time.process_time()
            fn()
            best = min(best, time.process_time() - started)
        out[f"{name}_us"] = best / len(obs) * 1e6
    out["spool_bytes_v1"] = sum(map(len, v1)) / len(v1)
    out["spool_bytes_v2"] = sum(map(len, v2)) / len(v2)
    assert chain.content_hash("observation", obs[0].evidence_fields(), 2) == content_hashes("observation",
                                                                                            values[:1], 2)[0]
    return out


PIPELINES = ("plain", "overlap", "process", "process_inline")  # the writer task as before, overlapped, a process
# (with its preparer process; "process_inline": preparing in the writer process as before the fifth pass)


def proc_cpu(pid: int) -> float:
    """CPU seconds of a process of ours (user + system)."""
    return backend_cpu(pid)


def children(pid: int) -> list[int]:
    """The live child processes of one of ours (the writer process's preparer)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        return []


async def run_pipeline(dsn: str, obs: list[Observation], size: int, mode: str = "plain") -> float:
    """Batcher.put → spool → the writer, as `mode`: "plain" (decode, write, one batch at a time: the writer
    task before issue 14's second pass), "overlap" (sinks.InOrder in the task: the next batch prepared in
    slices while one is in PostgreSQL), "process" (the writer process, collector.writer = "process", and its
    preparer process), "process_inline" (the writer process preparing in its own loop, before the fifth pass)."""
    async with fresh_schema(dsn, "pipeline") as schema:
        pool = await pool_for(dsn, schema, size=1)
        spool = Spool(Path(tempfile.mkdtemp(prefix="tw-bench-spool-")), 2**31)
        spool.open()
        try:
            async with pool.acquire() as conn:
                await seed_targets(conn)
            key = Ed25519PrivateKey.generate()
            writer = EvidenceWriter(pool, "bench", key)
            done, written = asyncio.Event(), [0]

            def on_batch(n: int, _elapsed: float) -> None:
                written[0] += n
                if written[0] >= len(obs):
                    done.set()

            sink: Sink | None = None
            app = f"tw-bench-writer-{os.getpid()}"
            if mode == "overlap":
                sink = InOrder(lambda: writer)
            elif mode.startswith("process"):
                sink = process = ProcessSink()
                process.connect(writer_config(dsn, schema, "bench", key.private_bytes_raw(), 86400, 10_000, 60.0,
                                              30.0, "json", "warning")
                                | {"application_name": app, "preparer": mode == "process"})
                await (await process.submit([]))  # started and ready (its preparer too): imports are not ingestion
                assert process.proc is not None
                child = proc_cpu(process.proc.pid)
                preparers = children(process.proc.pid)
                grandchild = sum(proc_cpu(p) for p in preparers)
            batcher = Batcher(writer.write, spool, batch_size=size, flush_interval_s=0.2, on_batch=on_batch,
                              sink=sink, depth=1 if mode == "plain" else 2)
            batcher.start()
            pid = await pool.fetchval("SELECT pg_backend_pid()")
            server = backend_cpu(pid)
            with Stopwatch() as t:
                for i, o in enumerate(obs):
                    batcher.put(o)
                    if i % size == size - 1:
                        await asyncio.sleep(0)  # observations arrive while batches are written, as in the daemon
                await done.wait()
            server = backend_cpu(pid) - server
            if mode.startswith("process"):
                assert process.proc is not None
                CHILD_CPU_US.append((proc_cpu(process.proc.pid) - child) / len(obs) * 1e6)
                PREPARER_CPU_US.append((sum(proc_cpu(p) for p in preparers) - grandchild) / len(obs) * 1e6)
                pids = [r[0] for r in await pool.fetch("SELECT pid FROM pg_stat_activity WHERE application_name = $1",
                                                        app)]
                server += sum(backend_cpu(p) for p in pids)  # the writer's own connection
            assert await batcher.stop(timeout=10) == 0  # (this benchmark found the stop() hang fixed in 727ad52)
            assert await pool.fetchval("SELECT count(*) FROM observations") == len(obs)
        finally:
            await pool.close()
    return _rate(obs, t, server)


CHILD_CPU_US: list[float] = []  # the writer process's CPU per observation, process pipelines
PREPARER_CPU_US: list[float] = []  # its preparer process's, likewise (0 without one)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    obs = make_observations(args.observations)
    print(f"ingestion: {len(obs):,} observations, batch size {args.batch_size}, {args.runs} runs")
    runs: list[dict[str, float]] = []
    async with server_dsn() as dsn:
        for _ in range(args.runs):
            r = {"raw": await run_raw(dsn, obs, args.batch_size),
                 "writer": await run_writer(dsn, obs, args.batch_size),
                 "pipeline": await run_pipeline(dsn, obs, args.batch_size),
                 "pipeline_overlap": await run_pipeline(dsn, obs, args.batch_size, "overlap"),
                 "pipeline_process": await run_pipeline(dsn, obs, args.batch_size, "process"),
                 "pipeline_process_inline": await run_pipeline(dsn, obs, args.batch_size, "process_inline")}
            if args.levers:
                r |= {"writer_chain_v1": await run_writer(dsn, obs, args.batch_size, chain_format=1),
                      "writer_every_touch": await run_writer(dsn, obs, args.batch_size, chain_every_touch=True),
                      "writer_pre_0014": await run_writer(dsn, obs, args.batch_size, schema_sql=PRE_0014)}
            names = list(r)
            r |= {f"{name}_cpu_us": cpu for name, cpu in zip(names, CPU_US[-len(names):], strict=True)}
            r |= {f"{name}_pg_cpu_us": cpu for name, cpu in zip(names, PG_CPU_US[-len(names):], strict=True)}
            r["pipeline_process_child_cpu_us"], r["pipeline_process_inline_child_cpu_us"] = CHILD_CPU_US[-2:]
            r["pipeline_process_preparer_cpu_us"] = PREPARER_CPU_US[-2]
            r["ratio"] = r["pipeline"] / r["raw"]
            r["ratio_overlap"] = r["pipeline_overlap"] / r["raw"]
            r["ratio_process"] = r["pipeline_process"] / r["raw"]
            r["ratio_process_inline"] = r["pipeline_process_inline"] / r["raw"]
            print("  run: " + ", ".join(f"{k} {v:,.2f}" for k, v in r.items()))
            runs.append(r)
    med = {k: median([r[k] for r in runs]) for k in runs[0]}
    summary = {"pipeline_obs_per_s": med["pipeline"], "writer_obs_per_s": med["writer"], "raw_obs_per_s": med["raw"],
               "pipeline_vs_raw": med["ratio"], "target_ratio_ge_0_5": med["ratio"] >= 0.5,
               "target_ge_20000_per_s": med["pipeline"] >= 20_000}
    print(f"ingestion: pipeline {med['pipeline']:,.0f} obs/s, writer alone {med['writer']:,.0f} obs/s, "
          f"raw COPY {med['raw']:,.0f} obs/s → ratio {med['ratio']:.2f} (target ≥ 0.5, ≥ 20,000 obs/s)")
    print("  this process's CPU µs per observation (median): "
          + ", ".join(f"{k.removesuffix('_cpu_us')} {v:.1f}" for k, v in med.items()
                      if k.endswith("_cpu_us") and not k.endswith("_pg_cpu_us")))
    print("  PostgreSQL backend CPU µs per observation (median): "
          + ", ".join(f"{k.removesuffix('_pg_cpu_us')} {v:.1f}" for k, v in med.items() if k.endswith("_pg_cpu_us")))
    print(f"  incident updates (all, heap-only), last run: {HOT}")
    extra: dict[str, Any] = {}
    if args.levers:
        extra = {"cpu_per_observation": cpu_parts(obs[:10_000]), "incident_changes": CHANGES}
        print("  CPU µs per observation: " + ", ".join(f"{k} {v:.1f}" for k, v in extra["cpu_per_observation"].items()))
        print(f"  incident-change rows chained: {CHANGES}")
    extra["incident_updates_all_hot"] = HOT
    write_result("ingestion", {"scale": vars(args), "runs": runs, "median": med, "summary": summary, **extra})
    return summary


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.ingestion", description=__doc__.split("\n")[0])
    p.add_argument("--observations", type=int, default=50_000)
    p.add_argument("--batch-size", type=int, default=1000, help="collector.batch_size (default: the shipped 1000)")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--levers", action="store_true", help="also measure each of issue 14's changes against its absence")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    started = time.monotonic()
    run(lambda: main_async(args))
    print(f"ingestion: {time.monotonic() - started:.0f} s in all")


if __name__ == "__main__":
    main()
