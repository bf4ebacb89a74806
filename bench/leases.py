"""Lease import benchmark: a million /32 leases from CSV into isp_leases, time and peak memory.

A synthetic ISP file in address order (as ISPs export them): distinct /32 addresses, every port, a start
at a random second of 2026 and a length of 1 to 30 days, subscriber SUB-nnnnnnn. Each measurement runs
in a process of its own, so its peak RSS is its own (ru_maxrss), against a fresh migrated schema:
  * import — what `tracker-watch isp import` does: read_lease_file (parse, check, overlap sweep) and
    import_leases (COPY into a temporary table, one INSERT … SELECT under the exclusion constraint);
  * raw COPY (baseline) — the same file streamed by PostgreSQL's COPY … CSV into a bare table of text
    columns, no parsing, index or constraint: the least any import can cost.
Also, in this process: parse time of the shapes that were quadratic (one address with 4,000 hourly
leases; a CGNAT address with 64 port blocks × 90 days, and × 365 days).
Targets (issue 13): 1,000,000 rows in ≤ 60 s and ≤ 500 MiB.

    python -m bench.leases                     # 1,000,000 rows, 1 run
    python -m bench.leases --rows 100000 --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from bench.common import Stopwatch, fresh_schema, median, run, server_dsn, write_result
from tracker_watch.domain.leases import HEADER, parse

YEAR_START = datetime(2026, 1, 1, tzinfo=UTC)


def write_file(path: Path, rows: int, seed: int = 13) -> None:
    rng = random.Random(seed)
    with path.open("w") as f:
        f.write(",".join(HEADER) + "\n")
        for i in range(rows):
            a = 0x0A000000 + i  # 10.0.0.0 onwards: distinct, ascending
            start = YEAR_START + timedelta(seconds=rng.randrange(365 * 86400))
            end = start + timedelta(seconds=rng.randrange(86400, 30 * 86400))
            f.write(f"{a >> 24}.{a >> 16 & 255}.{a >> 8 & 255}.{a & 255},,,{start:%Y-%m-%dT%H:%M:%SZ},"
                    f"{end:%Y-%m-%dT%H:%M:%SZ},SUB-{i:07d}\n")


def shapes() -> dict[str, dict[str, float]]:
    """Parse time of the per-address shapes that used to grow quadratically."""
    def stamp(hours: float) -> str:
        return f"{YEAR_START + timedelta(hours=hours):%Y-%m-%dT%H:%M:%SZ}"

    head = ",".join(HEADER) + "\n"
    cases = {
        "one address, 4,000 hourly leases": "".join(f"203.0.113.7,,,{stamp(h)},{stamp(h + 1)},S{h}\n"
                                                    for h in range(4000)),
        **{f"CGNAT address, 64 port blocks x {days} days": "".join(
            f"100.64.0.1,{b * 1024},{b * 1024 + 1023},{stamp(d * 24)},{stamp(d * 24 + 24)},S{b}-{d}\n"
            for d in range(days) for b in range(64)) for days in (90, 365)}}
    out = {}
    for name, body in cases.items():
        with Stopwatch() as sw:
            leases = parse(head + body)
        out[name] = {"rows": len(leases), "parse_s": sw.wall}
        print(f"  {name}: {len(leases):,} rows parsed in {sw.wall:.2f} s")
    return out


async def child(kind: str, dsn: str, schema: str, path: Path) -> dict[str, float]:
    """One measurement, in its own process: wall time of each phase and this process's peak RSS."""
    from tracker_watch.ledger.leases import import_leases, read_lease_file

    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    out: dict[str, float] = {}
    started = time.perf_counter()
    if kind == "raw":
        await conn.execute("CREATE TABLE raw_leases (prefix text, port_from text, port_to text, valid_from text, "
                           "valid_to text, subscriber text)")
        await conn.copy_to_table("raw_leases", source=path, format="csv", header=True)
    else:
        leases = read_lease_file(path)
        out["parse_s"] = time.perf_counter() - started
        out["rows"] = await import_leases(conn, "Bench ISP", leases)
        out["db_s"] = time.perf_counter() - started - out["parse_s"]
    out["total_s"] = time.perf_counter() - started
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    await conn.close()
    return out


async def measure(kind: str, dsn: str, path: Path) -> dict[str, float]:
    async with fresh_schema(dsn, f"leases_{kind}") as schema:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.leases", "--child", kind, dsn, schema, str(path),
            stdout=subprocess.PIPE)
        stdout, _ = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"bench.leases child {kind} failed ({proc.returncode})")
        result: dict[str, float] = json.loads(stdout.decode().splitlines()[-1])
        return result


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    print(f"leases: {args.rows:,} /32 leases, {args.runs} run(s)")
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="tw-bench-leases-") as tmp:
        path = Path(tmp) / "leases.csv"
        write_file(path, args.rows)
        size = path.stat().st_size
        async with server_dsn() as dsn:
            for _ in range(args.runs):
                raw, imported = await measure("raw", dsn, path), await measure("import", dsn, path)
                runs.append({"raw": raw, "import": imported})
                print(f"  run: raw COPY {raw['total_s']:.1f} s ({raw['peak_rss_mib']:.0f} MiB); import "
                      f"{imported['total_s']:.1f} s (parse {imported['parse_s']:.1f} s, database "
                      f"{imported['db_s']:.1f} s), peak RSS {imported['peak_rss_mib']:.0f} MiB")
    med = {f"{k}_{m}": median([r[k][m] for r in runs]) for k in ("raw", "import") for m in runs[0][k]}
    med["ratio_vs_raw"] = med["import_total_s"] / med["raw_total_s"]
    print(f"leases: import {med['import_total_s']:.1f} s (target ≤ 60 s), peak RSS "
          f"{med['import_peak_rss_mib']:.0f} MiB (target ≤ 500 MiB); raw COPY {med['raw_total_s']:.1f} s "
          f"({med['ratio_vs_raw']:.1f}× it); file {size / 2**20:.0f} MiB")
    return {"scale": {"rows": args.rows, "runs": args.runs, "file_bytes": size}, "runs": runs, "median": med}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.leases", description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--child", nargs=4, metavar=("KIND", "DSN", "SCHEMA", "FILE"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        kind, dsn, schema, path = args.child
        print(json.dumps(asyncio.run(child(kind, dsn, schema, Path(path)))))
        return

    async def go() -> None:
        result = await main_async(args)
        result["shapes"] = shapes()
        write_result("leases", result)

    run(go)


if __name__ == "__main__":
    main()
