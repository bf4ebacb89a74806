"""Keeps the long-lived swarm objects out of Python's cyclic garbage collector.

A node watching thousands of swarms holds ~100 tracked objects per swarm (the Swarm, its announce tasks,
timers, the collector's and the verifier's entries): ~1 M at 10,000 swarms. Every full (generation 2)
collection walks all of them — 0.6–1.1 s with the event loop stopped — and a large registration triggers
one every ~250,000 new objects (bench/registration_gc.py: 13–14 during 10,000 registrations, 5.4 s in all).

After a batch of swarms started or regrouped (their metadata arrived: the stored info, the spec, the engine's
piece tracker), `gc.freeze()` moves everything tracked into the permanent generation, which no collection walks.
A swarm regroups a bounded number of times (metadata once, a holder joining or leaving), so the freezes stay
bounded by the targets' churn, as before. The trade-off, measured in BENCHMARKS.md ("Capacity under load"):
* cyclic garbage that already sits in the oldest generation at a freeze is kept until an unfreeze (the
  young generations are collected first, so only garbage older than the last few collections is kept);
* frozen objects freed later by reference counting are freed as usual; frozen objects in reference cycles
  (a stopped Swarm and its timers and piece tracker) are not, so once STOPS_BEFORE_UNFREEZE swarms were
  stopped since the last freeze, `gc.unfreeze()` hands everything back to the collector, whose next full
  collection (one pause of the old length) reclaims them. What a freeze can keep is bounded by that.
"""

from __future__ import annotations

import gc

# The collector's thresholds in a node (generation 0, 1, 2; Python's are 700, 10, 10: a young collection every
# 700 net allocations, a full one every 100 of those once the old generation grew by a quarter). A node proving
# 10,000 peers allocates millions of short-lived objects (connections, messages, rows): at 5,000 busy swarms it
# spent 3.3 s of its 20 s of CPU in 538 young and 11 full collections, the longest 256 ms with the loop stopped
# (BENCHMARKS.md, capacity under load). At 10,000 most of them die by reference counting before a collection
# sees them, and full ones come ~14× less often. Cyclic garbage waits for 10,000 allocations more: a few MiB.
NODE_THRESHOLDS = (10_000, 10, 10)
FREEZE_EVERY = 1024  # swarms started between two freezes (a freeze costs ~1 ms; a young collection before it)
STOPS_BEFORE_UNFREEZE = 512


class HeapKeeper:
    def __init__(self, freeze_every: int = FREEZE_EVERY, stops_before_unfreeze: int = STOPS_BEFORE_UNFREEZE) -> None:
        self.freeze_every = freeze_every
        self.stops_before_unfreeze = stops_before_unfreeze
        self._started = 0  # since the last freeze
        self._stopped = 0  # since the last freeze
        self.freezes = 0
        self.unfreezes = 0

    def started(self) -> None:
        """A swarm started, or its long-lived state grew (regrouped: its metadata, another holder)."""
        self._started += 1
        if self._started >= self.freeze_every:
            self.freeze()

    def stopped(self) -> None:
        self._stopped += 1
        if self._stopped >= self.stops_before_unfreeze and gc.get_freeze_count():
            gc.unfreeze()
            self.unfreezes += 1
            self._stopped = 0

    def settle(self) -> None:
        """At the end of a pass: freeze what a smaller batch started, once it is worth it."""
        if self._started >= self.freeze_every // 4:
            self.freeze()

    def freeze(self) -> None:
        gc.collect(1)  # young garbage goes first, so that only older garbage can be frozen with the rest
        gc.freeze()
        self.freezes += 1
        self._started = 0


def tune_collector() -> None:
    """Raise the collector's thresholds to NODE_THRESHOLDS; higher ones (an embedder's) stay, a disabled one too."""
    now = gc.get_threshold()
    if now[0]:
        gc.set_threshold(*(max(a, b) for a, b in zip(now, NODE_THRESHOLDS, strict=True)))
