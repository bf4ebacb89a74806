"""Retention benchmark: redacting a past month of evidence by rewriting its partitions, against the
row-by-row UPDATE it replaces, over the same observations written through the real writer.

The observations (the ingestion mix) are dated in a month well past retention; one incident in ten is
on legal hold. Each path runs in its own fresh schema:
  * rewrite — retention.purge: the month's day partitions replaced by one partition, due rows blank;
  * update (baseline) — retention.purge(compact=False): UPDATE … SET ip = NULL … per row, as before.
Reported: wall time, and the table's size (heap + indexes, all partitions) before, after, and after a
plain VACUUM (which returns an UPDATE's dead tuples to free space but not to the file system).

    python -m bench.retention                       # 100,000 observations
"""

from __future__ import annotations

import argparse
import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.common import Stopwatch, fresh_schema, pool_for, run, server_dsn, write_result
from bench.ingestion import make_observations, seed_targets
from bench.sizing import sizes
from tracker_watch.domain.evidence import Observation, utc_now_ms
from tracker_watch.ledger import partitions, retention
from tracker_watch.ledger.evidence import EvidenceWriter
from tracker_watch.ledger.verify import verify_ledger


def in_past_month(obs: list[Observation]) -> list[Observation]:
    """The same observations spread over the month before last (retention is due for all of it)."""
    first = (datetime.now(UTC).replace(day=1) - timedelta(days=40)).replace(day=1, hour=0, minute=0, second=0,
                                                                            microsecond=0)
    step = timedelta(days=27) / len(obs)
    return [dataclasses.replace(o, observed_at=first + i * step) for i, o in enumerate(obs)]


async def one(dsn: str, obs: list[Observation], compact: bool) -> dict[str, Any]:
    async with fresh_schema(dsn, "retention") as schema:
        pool = await pool_for(dsn, schema)
        try:
            async with pool.acquire() as conn:
                await seed_targets(conn)
            writer = EvidenceWriter(pool, "bench", Ed25519PrivateKey.generate())
            for i in range(0, len(obs), 1000):
                await writer.write(obs[i:i + 1000])
            async with pool.acquire() as conn:
                await partitions.ensure(conn)  # the month's days, out of the DEFAULT partition
                await conn.execute("UPDATE incidents SET legal_hold = true WHERE id % 10 = 0")
                await conn.execute("VACUUM ANALYZE observations")
                before = (await sizes(conn, "observations"))[1]
                with Stopwatch() as t:
                    report = await retention.purge(conn, utc_now_ms(), 86400, dry_run=False, compact=compact)
                after = (await sizes(conn, "observations"))[1]
                await conn.execute("VACUUM observations")
                vacuumed = (await sizes(conn, "observations"))[1]
                assert (await verify_ledger(conn)).ok
            return {"seconds": t.wall, "redacted": report.observations, "months": report.months_compacted,
                    "bytes_before": before, "bytes_after": after, "bytes_after_vacuum": vacuumed}
        finally:
            await pool.close()


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    obs = in_past_month(make_observations(args.observations))
    async with server_dsn() as dsn:
        out = {"update": await one(dsn, obs, compact=False), "rewrite": await one(dsn, obs, compact=True)}
    for name, r in out.items():
        print(f"retention {name}: {r['seconds']:.2f} s for {r['redacted']:,} rows redacted; observations "
              f"{r['bytes_before'] / 2**20:.1f} MiB → {r['bytes_after'] / 2**20:.1f} MiB "
              f"({r['bytes_after_vacuum'] / 2**20:.1f} MiB after VACUUM)")
    summary = {"rewrite_vs_update_time": out["rewrite"]["seconds"] / out["update"]["seconds"],
               "rewrite_vs_update_bytes": out["rewrite"]["bytes_after_vacuum"] / out["update"]["bytes_after_vacuum"]}
    print(f"retention: rewrite takes {summary['rewrite_vs_update_time']:.2f}× the update's time and leaves "
          f"{summary['rewrite_vs_update_bytes']:.2f}× its bytes")
    write_result("retention", {"scale": vars(args), "runs": out, "summary": summary})
    return summary


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.retention", description=__doc__.split("\n")[0])
    p.add_argument("--observations", type=int, default=100_000)
    run(lambda: main_async(p.parse_args()))


if __name__ == "__main__":
    main()
