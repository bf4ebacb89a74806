"""`make bench`: every benchmark in turn at its default (reduced) scale, each in its own process.

Separate processes keep one benchmark's memory, threads and libtorrent state out of the next one's
figures. Flags for full scale are on each module: python -m bench.<name> --help.
"""

from __future__ import annotations

import subprocess
import sys
import time

BENCHMARKS = ("ingestion", "ledger", "capacity", "capacity_load", "latency", "leases", "api_bulk")
# capacity_load runs three modes (generator alone, bare session, node): 500 swarms and a 90 s window keep it
# near 3 min; 1,000 / 5,000 / 10,000 swarms are separate commands (BENCHMARKS.md)
ARGS = {"capacity_load": ["--swarms", "500", "--timeout", "90", "--name", "capacity_load"]}


def main() -> int:
    failed = []
    started = time.monotonic()
    for name in BENCHMARKS:
        print(f"=== bench.{name} ===", flush=True)
        if subprocess.run([sys.executable, "-m", f"bench.{name}", *ARGS.get(name, [])], check=False).returncode != 0:
            failed.append(name)
    print(f"=== all benchmarks: {time.monotonic() - started:.0f} s; results in bench/results/*.json ===")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
