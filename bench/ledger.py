"""Ledger benchmark: strike evaluation (StrikeLedger.rebuild and tick) over bulk-loaded evidence.

Synthetic evidence goes straight into the tables with COPY: one `verified` observation per incident,
incidents spread over a year, `subjects` distinct addresses (bare-IP subjects), `works` works of one
rights holder. Measured:
  * first evaluation — StrikeLedger.tick() on the fresh evidence: every strike and notice is created;
  * rebuild — StrikeLedger.rebuild() of that sound ledger: attributions and strikes re-derived from the
    evidence alone (nothing changes, which is what a rebuild normally finds);
  * incremental — `--new` more incidents appended to the chain, then one StrikeLedger.tick();
  * baseline — a plain SQL aggregate over the same observations (per subject: incidents, works, span),
    the least work any evaluation has to do; the ratio says how far the ledger is from it.
Targets (issue 7): rebuild of 1,000,000 incidents / 100,000 subjects ≤ 30 s; 10,000 new ≤ 1 s.

    python -m bench.ledger                     # default scale: 20,000 incidents, 2,000 subjects, 2,000 new
    python -m bench.ledger --incidents 1000000 --subjects 100000   # full scale
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from bench.common import (
    Stopwatch,
    analyze_own,
    bench_settings,
    fresh_schema,
    median,
    pool_for,
    run,
    server_dsn,
    write_result,
)
from tracker_watch.domain.incidents import window_start
from tracker_watch.ledger.strikes import StrikeLedger

NODE = "bench"
DAY = 86400
_OBS_COLUMNS = ("id", "target_id", "infohash_v1", "observed_at", "ip", "port", "source", "grade", "node", "version",
                "pieces_verified", "bytes_verified", "piece_index", "piece_bytes", "chain_seq", "content_hash",
                "prev_hash", "row_hash")
_INC_COLUMNS = ("target_id", "ip", "window_start", "first_seen", "last_seen", "best_grade", "ports",
                "pieces_verified", "bytes_verified", "observations")
BASELINE_SQL = """
SELECT ip, count(*) AS incidents, count(DISTINCT target_id) AS works, min(observed_at), max(observed_at)
FROM observations WHERE grade = 'verified' GROUP BY ip
"""


def subject_ip(n: int) -> str:
    # 10.0.0.0/8 is plenty for 16M subjects; jurisdiction comes from policy.test_country, not the address
    return f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"


class Evidence:
    """Deterministic synthetic incidents, generated in chunks so a million rows never sit in memory twice."""

    def __init__(self, subjects: int, works: int, seed: int = 1) -> None:
        self.subjects, self.works = subjects, works
        self.rng = random.Random(seed)
        self.seq = 0
        self.now = datetime.now(UTC).replace(microsecond=0)

    def chunk(self, n: int, start_days_ago: int = 365, end_days_ago: int = 1) -> tuple[list[Any], list[Any]]:
        obs: list[tuple[Any, ...]] = []
        inc: list[tuple[Any, ...]] = []
        seen: set[tuple[int, int, datetime]] = set()
        while len(obs) < n:
            subject = self.rng.randrange(self.subjects)
            target = self.rng.randrange(self.works) + 1
            at = self.now - timedelta(days=self.rng.uniform(end_days_ago, start_days_ago))
            ws = window_start(at, DAY)
            if (subject, target, ws) in seen:
                continue
            seen.add((subject, target, ws))
            self.seq += 1
            ip, h = subject_ip(subject), random.randbytes(32)
            obs.append((uuid.uuid4(), target, target.to_bytes(20, "big"), at, ip, 6881, "tracker", "verified",
                        NODE, "bench", 1, 16384, 0, 16384, self.seq, h, h, h))
            inc.append((target, ip, ws, at, at, "verified", [6881], [0], 16384, 1))
        return obs, inc


async def load(conn: asyncpg.Connection, ev: Evidence, incidents: int, **window: int) -> None:
    """COPY `incidents` observations and their incidents in, and move the chain head past them."""
    left = incidents
    while left > 0:
        obs, inc = ev.chunk(min(left, 50_000), **window)
        await conn.copy_records_to_table("observations", records=obs, columns=_OBS_COLUMNS)
        # a window seen again (incremental load) is a changed incident, as the writer would make it
        await conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS inc_stage AS SELECT {', '.join(_INC_COLUMNS)} "
                           "FROM incidents WITH NO DATA")
        await conn.copy_records_to_table("inc_stage", records=inc, columns=_INC_COLUMNS)
        await conn.execute(f"INSERT INTO incidents ({', '.join(_INC_COLUMNS)}) SELECT {', '.join(_INC_COLUMNS)} "
                           "FROM inc_stage ON CONFLICT (target_id, ip, window_start) DO UPDATE SET "
                           "observations = incidents.observations + 1, last_seen = EXCLUDED.last_seen")
        await conn.execute("TRUNCATE inc_stage")
        left -= len(obs)
    await conn.execute("INSERT INTO chain_heads (node, seq, head_hash) VALUES ($1, $2, $3) ON CONFLICT (node) "
                       "DO UPDATE SET seq = EXCLUDED.seq", NODE, ev.seq, bytes(32))
    await analyze_own(conn)


async def seed_catalogue(conn: asyncpg.Connection, works: int) -> None:
    holder = await conn.fetchval("INSERT INTO rights_holders (name) VALUES ('Bench Studios') RETURNING id")
    await conn.copy_records_to_table("works", records=[(holder, f"work {i}") for i in range(works)],
                                     columns=("holder_id", "title"))
    await conn.execute("INSERT INTO targets (work_id, infohash_v1, input_kind) "
                       "SELECT id, int8send(id) || decode(repeat('00', 12), 'hex'), 'hex' FROM works ORDER BY id")


class TimedLedger(StrikeLedger):
    """The real StrikeLedger, timing its two phases (attribution walk, per-subject evaluation)."""

    def __init__(self, pool: Any, settings: Any, lanes: int = 2) -> None:
        super().__init__(pool, settings)
        self.phases: dict[str, float] = {}
        self.lanes = lanes  # evaluation lanes (StrikeLedger.evaluate_subjects); 1 for an A/B

    def _add(self, phase: str, seconds: float) -> None:
        self.phases[phase] = self.phases.get(phase, 0.0) + seconds

    async def attribute(self, limit: int, conn: Any = None) -> tuple[int, set[int], int, int]:
        t = time.perf_counter()
        try:
            return await super().attribute(limit, conn)
        finally:
            self._add("attribute", time.perf_counter() - t)

    async def evaluate_subject(self, subject_id: int) -> tuple[int, int]:
        t = time.perf_counter()
        try:
            return await super().evaluate_subject(subject_id)
        finally:
            self._add("evaluate", time.perf_counter() - t)

    async def evaluate_subjects(self, subject_ids: set[int], chunk: int = 10000, lanes: int = 2) -> tuple[int, int]:
        t = time.perf_counter()
        try:
            return await super().evaluate_subjects(subject_ids, chunk, self.lanes)
        finally:
            self._add("evaluate", time.perf_counter() - t)


async def one_run(dsn: str, args: argparse.Namespace) -> dict[str, float]:
    async with fresh_schema(dsn, "ledger") as schema:
        settings = bench_settings(Path(tempfile.mkdtemp(prefix="tw-bench-")), dsn, schema)
        conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
        pool = await pool_for(dsn, schema)
        try:
            ev = Evidence(args.subjects, args.works)
            await seed_catalogue(conn, args.works)
            with Stopwatch() as t_load:
                await load(conn, ev, args.incidents, start_days_ago=365, end_days_ago=2)
            with Stopwatch() as t_base:
                await conn.fetch(BASELINE_SQL)
            ledger = TimedLedger(pool, settings, args.lanes)
            with Stopwatch() as t_first:
                await ledger.tick()  # the first evaluation: every strike and notice is created here
            ledger.phases.clear()
            with Stopwatch() as t_rebuild:
                report = await ledger.rebuild()  # of a sound ledger: everything re-derived, nothing changes
            phases = dict(ledger.phases)
            await load(conn, ev, args.new, start_days_ago=1, end_days_ago=0)
            with Stopwatch() as t_tick:
                tick = await ledger.tick()
            strikes = await conn.fetchval("SELECT count(*) FROM strikes")
        finally:
            await pool.close()
            await conn.close()
    out = {"load_s": t_load.wall, "baseline_s": t_base.wall, "first_tick_s": t_first.wall, "rebuild_s": t_rebuild.wall,
           "rebuild_attribute_s": phases.get("attribute", 0.0), "rebuild_evaluate_s": phases.get("evaluate", 0.0),
           "rebuild_cpu_s": t_rebuild.cpu, "tick_s": t_tick.wall, "tick_cpu_s": t_tick.cpu,
           "strikes": float(strikes), "rebuild_subjects": float(report.subjects), "tick_subjects": float(tick.subjects)}
    print("  run: " + ", ".join(f"{k} {v:.2f}" for k, v in out.items()))
    return out


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    print(f"ledger: {args.incidents:,} incidents, {args.subjects:,} subjects, {args.works} works; "
          f"then {args.new:,} new; {args.runs} runs; {args.lanes} evaluation lanes")
    async with server_dsn() as dsn:
        runs = [await one_run(dsn, args) for _ in range(args.runs)]
    med = {k: median([r[k] for r in runs]) for k in runs[0]}
    scale = 1_000_000 / args.incidents
    summary = {
        "first_tick_s": med["first_tick_s"], "rebuild_s": med["rebuild_s"],
        "rebuild_attribute_s": med["rebuild_attribute_s"], "rebuild_evaluate_s": med["rebuild_evaluate_s"],
        "tick_new_s": med["tick_s"], "baseline_aggregate_s": med["baseline_s"],
        "rebuild_vs_baseline": med["rebuild_s"] / med["baseline_s"],
        "rebuild_incidents_per_s": args.incidents / med["rebuild_s"],
        "rebuild_s_extrapolated_1M": med["rebuild_s"] * scale,
        "target_rebuild_1M_le_30s": med["rebuild_s"] * scale <= 30,
        "target_tick_10k_le_1s": med["tick_s"] * (10_000 / args.new) <= 1,
    }
    print(f"ledger: first evaluation (creates {med['strikes']:.0f} strikes and notices) {med['first_tick_s']:.2f} s")
    print(f"ledger: rebuild {med['rebuild_s']:.2f} s (attribution {med['rebuild_attribute_s']:.2f} s, "
          f"evaluation {med['rebuild_evaluate_s']:.2f} s) ({summary['rebuild_incidents_per_s']:,.0f} incidents/s, "
          f"{summary['rebuild_vs_baseline']:.0f}× the plain aggregate's {med['baseline_s']:.3f} s); "
          f"tick over {args.new:,} new {med['tick_s']:.2f} s")
    print(f"ledger: extrapolated to 1M incidents: rebuild {summary['rebuild_s_extrapolated_1M']:.0f} s (target ≤ 30 s)")
    write_result("ledger", {"scale": vars(args), "runs": runs, "median": med, "summary": summary})
    return summary


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.ledger", description=__doc__.split("\n")[0])
    p.add_argument("--incidents", type=int, default=int(os.environ.get("BENCH_LEDGER_INCIDENTS", 20_000)))
    p.add_argument("--subjects", type=int, default=2_000)
    p.add_argument("--works", type=int, default=200)
    p.add_argument("--new", type=int, default=2_000, help="incidents added before the incremental tick")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--lanes", type=int, default=2, help="evaluation lanes (1: one chunk at a time, as before)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    run(lambda: main_async(args))


if __name__ == "__main__":
    main()
