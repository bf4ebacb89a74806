"""Experiment knobs of bench.capacity_load's node, read from the environment (none set: the product's defaults).

TW_BENCH_PROBES=N         the node's verify.probe_concurrency (32): the slots its outgoing probes and the proofs
                          of peers that dial its listener share, and (× INCOMING_HELD) the peers the listener holds
TW_BENCH_INCOMING_HELD=N  peers the verifier holds per probe slot (16)
TW_BENCH_GC=a,b,c         the cyclic collector's thresholds, e.g. "10000,10,10"
TW_BENCH_SWITCH=seconds   the interpreter's GIL switch interval (0.005)
TW_BENCH_HOLDS=seconds    print what holds the loop longer (bench/holds.py)
"""

from __future__ import annotations

import gc
import os
import sys


def verify_settings() -> dict[str, int]:
    value = os.environ.get("TW_BENCH_PROBES")
    return {"probe_concurrency": int(value)} if value else {}


def apply_to_process() -> None:
    """The knobs that act on this process rather than on the node's settings."""
    if os.environ.get("TW_BENCH_INCOMING_HELD"):
        from tracker_watch.swarm import verifier as verifier_module
        verifier_module.INCOMING_HELD = int(os.environ["TW_BENCH_INCOMING_HELD"])
    if os.environ.get("TW_BENCH_GC"):
        gc.set_threshold(*(int(x) for x in os.environ["TW_BENCH_GC"].split(",")))
    if os.environ.get("TW_BENCH_SWITCH"):
        sys.setswitchinterval(float(os.environ["TW_BENCH_SWITCH"]))
