"""Shared benchmark plumbing: the PostgreSQL server, a throwaway schema, settings, timing and results.

Every benchmark measures its own baseline in the same run and reports a ratio, because this machine is
shared and noisy: absolute numbers drift between runs, ratios much less.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from tracker_watch.config import Settings, settings_from_mapping
from tracker_watch.ledger import migrate
from tracker_watch.ledger.db import EmbeddedPostgres

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"
RESULTS = Path(__file__).resolve().parent / "results"


@asynccontextmanager
async def server_dsn() -> AsyncIterator[str]:
    """TRACKER_WATCH_BENCH_DSN, else the local server; an embedded one when neither answers."""
    dsn = os.environ.get("TRACKER_WATCH_BENCH_DSN", DEFAULT_DSN)
    try:
        conn = await asyncpg.connect(dsn, timeout=3)
        await conn.close()
    except (OSError, asyncpg.PostgresError, TimeoutError):
        embedded = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="tw-bench-pg-")) / "pgdata")
        print(f"• {dsn} not reachable: using an embedded PostgreSQL", file=sys.stderr)
        yield await embedded.start()
        await embedded.stop()
        return
    yield dsn


@asynccontextmanager
async def fresh_schema(dsn: str, prefix: str, migrated: bool = True) -> AsyncIterator[str]:
    """A schema of its own (with every migration applied), dropped afterwards whatever happens."""
    name = f"tw_bench_{prefix}_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(dsn)
    try:
        if migrated:
            await migrate.apply(conn, name)
        else:
            await conn.execute(f'CREATE SCHEMA "{name}"')
        yield name
    finally:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        await conn.close()


async def pool_for(dsn: str, schema: str, size: int = 4) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=size, server_settings={"search_path": schema})
    assert pool is not None
    return pool


def bench_settings(state_dir: Path, dsn: str, schema: str, **sections: dict[str, Any]) -> Settings:
    """Loopback monitor settings like the demo's, with whole-section overrides."""
    from tracker_watch.demo.run import demo_settings

    base = demo_settings(state_dir, dsn=dsn, schema=schema)
    from dataclasses import asdict

    raw = {k: {kk: (str(vv) if isinstance(vv, Path) else vv) for kk, vv in v.items()} for k, v in asdict(base).items()}
    for section, values in sections.items():
        raw[section].update(values)
    return settings_from_mapping(raw)


@dataclass
class Stopwatch:
    """Wall and process CPU time of a block."""

    wall: float = 0.0
    cpu: float = 0.0
    _t: tuple[float, float] = field(default=(0.0, 0.0), repr=False)

    def __enter__(self) -> Stopwatch:
        self._t = (time.perf_counter(), time.process_time())
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._t[0]
        self.cpu = time.process_time() - self._t[1]


def rss_bytes() -> int:
    """Current resident set size of this process (from /proc; ru_maxrss is only the peak)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def machine() -> dict[str, Any]:
    import libtorrent as lt

    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    mem = next(int(line.split()[1]) * 1024 for line in Path("/proc/meminfo").read_text().splitlines()
               if line.startswith("MemTotal"))
    return {"nproc": os.cpu_count(), "cpu": model, "ram_bytes": mem, "python": platform.python_version(),
            "libtorrent": str(lt.__version__)}


def niced(increment: int) -> Callable[[], None] | None:
    """A subprocess's preexec_fn that lowers its CPU priority (its children inherit it): for a load generator
    that stands in for other machines but shares this one's cores with what it measures."""
    def lower() -> None:
        os.nice(increment)
    return lower if increment else None


def cpu_yardstick() -> float:
    """Seconds this machine takes for a fixed piece of pure-Python work (best of 3): the hosts behind this
    project's 2-core machines differ by up to ~2× between sessions (BENCHMARKS.md, Machine), so figures of
    different days compare only through a ratio to this (or to a baseline of their own run)."""
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        total = 0
        for i in range(2_000_000):
            total += i & 7
        best = min(best, time.perf_counter() - t0)
    return best


def write_result(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"benchmark": name, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine(),
               **payload}
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    print(f"• results written to {path}")
    return path


def run(main: Callable[[], Any]) -> None:
    """Run an async main with libtorrent's deprecation warnings and the daemon's info logs silenced."""
    import warnings

    from tracker_watch import log
    from tracker_watch.config import LogSettings

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    # one log line per strike or peer would cost more than some of the work being measured
    # TW_BENCH_LOG=info: the daemon's info lines as JSON, to see where time goes
    level = os.environ.get("TW_BENCH_LOG", "")
    log.configure(LogSettings(format="json", level=level) if level in ("debug", "info")  # type: ignore[arg-type]
                  else LogSettings(format="console", level="warning"), node="bench", stream=sys.stderr)
    asyncio.run(main())


async def analyze_own(conn: asyncpg.Connection) -> None:
    """ANALYZE this schema's tables only: a bare ANALYZE walks every schema on the shared server (other
    helpers' tests and benchmarks), takes minutes there and can deadlock with their DDL."""
    tables = [r["t"] for r in await conn.fetch(
        "SELECT format('%I.%I', n.nspname, c.relname) AS t FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND NOT c.relispartition")]
    await conn.execute("ANALYZE " + ", ".join(tables))
