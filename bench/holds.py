"""Experiment aid: which event-loop callbacks hold the loop, and when full collections happen.

`TW_BENCH_HOLDS=0.05` (seconds) in a benchmark process wraps asyncio's Handle._run: every callback that
holds the loop longer prints one line to stderr (its duration, the callback or the task's coroutine and
where it stands), every full (generation-2) collection prints its length and the objects it walked, and every
young collection (GC0, GC1) or HeapKeeper freeze that takes longer prints its length, and whether a freeze ran it.
Costs ~1 µs per callback; not for the figures themselves, only for finding what holds the loop.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import time
from collections import Counter
from typing import Any


def install() -> None:
    limit = float(os.environ.get("TW_BENCH_HOLDS", "0") or 0)
    if limit <= 0:
        return
    run = asyncio.events.Handle._run
    t_gc = [0.0]

    def timed(self: asyncio.events.Handle) -> None:
        t0 = time.perf_counter()
        run(self)
        held = time.perf_counter() - t0
        if held >= limit:
            print(f"HOLD {time.time():.3f} {held * 1000:.0f} ms {_describe(self)}", file=sys.stderr, flush=True)

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            t_gc[0] = time.perf_counter()
            return
        took = time.perf_counter() - t_gc[0]
        if info["generation"] != 2:
            if took >= limit:
                print(f"GC{info['generation']} {time.time():.3f} {took * 1000:.0f} ms collected {info['collected']} "
                      f"{'in a freeze' if freezing[0] else 'automatic'}", file=sys.stderr, flush=True)
            return
        survivors = gc.get_objects(2)
        kinds = Counter(type(o).__qualname__ for o in survivors).most_common(25)
        print(f"FULLGC {time.time():.3f} {took * 1000:.0f} ms collected {info['collected']} tracked "
              f"{len(survivors):,} frozen {gc.get_freeze_count():,}: {kinds}", file=sys.stderr, flush=True)

    from tracker_watch.swarm.heap import HeapKeeper
    freeze = HeapKeeper.freeze
    freezing = [False]

    def timed_freeze(self: HeapKeeper) -> None:
        freezing[0], t0 = True, time.perf_counter()
        try:
            freeze(self)
        finally:
            freezing[0] = False
        held = time.perf_counter() - t0
        if held >= limit:
            print(f"FREEZE {time.time():.3f} {held * 1000:.0f} ms", file=sys.stderr, flush=True)

    HeapKeeper.freeze = timed_freeze  # type: ignore[method-assign]
    asyncio.events.Handle._run = timed  # type: ignore[method-assign]
    gc.callbacks.append(on_gc)


def _describe(handle: asyncio.events.Handle) -> str:
    cb = getattr(handle, "_callback", None)
    owner = getattr(cb, "__self__", None)
    if isinstance(owner, asyncio.Task):
        coro = owner.get_coro()
        frame = getattr(coro, "cr_frame", None)
        inner = coro
        while (nxt := getattr(inner, "cr_await", None)) is not None and getattr(nxt, "cr_frame", None) is not None:
            inner = nxt  # the innermost coroutine: where the step that held the loop stopped
            frame = inner.cr_frame
        where = f"{frame.f_code.co_filename}:{frame.f_lineno}" if frame is not None else "done"
        return f"task {getattr(coro, '__qualname__', coro)} at {where}"
    return repr(cb)[:200]
