"""Long runs of small steps on the event loop (starting swarms, handing listed peers to libtorrent) let the loop
run every `every` steps or once `slice_s` went by, whichever comes first.

A count alone bounds a slice only while each step is as cheap as when the count was chosen. At 10,000 busy
swarms a step that asks libtorrent's network thread something waits for it, and a chunk of 64 swarm starts
held the loop 70–177 ms (BENCHMARKS.md, capacity under load, seventh pass).
"""

from __future__ import annotations

import asyncio
import time

SLICE_S = 0.01  # the longest a slice runs before the loop gets a turn (plus the one step that crossed it)


class Pacer:
    def __init__(self, every: int, slice_s: float = SLICE_S) -> None:
        self.every = every
        self.slice_s = slice_s
        self._steps = 0
        self._since = time.monotonic()

    async def step(self) -> None:
        """One step done: yield to the event loop if this slice is long enough."""
        self._steps += 1
        if self._steps >= self.every or time.monotonic() - self._since >= self.slice_s:
            await asyncio.sleep(0)
            self._steps, self._since = 0, time.monotonic()
