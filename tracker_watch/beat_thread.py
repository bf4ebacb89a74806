"""The lease heartbeat's own event loop, in a thread of its own, with its own connections.

A beat is a dozen round trips to PostgreSQL. On the main event loop each reply waits for a full turn of the
loop, and with 5,000 busy swarms (10,000 announces in flight, swarms starting and stopping) a turn took long
enough that a beat outlasted the lease: the node fenced itself, restarted every swarm, and fenced again
(BENCHMARKS.md, "Lease fencing at 5,000"). Here a beat waits only for its own replies, and for the GIL, which
the main thread hands over every few milliseconds: its commit no longer depends on how busy the main loop is.
Every call of `Ownership` runs here (`call`); the main loop awaits the result.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class BeatThread:
    def __init__(self, name: str = "lease-heartbeat") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = False

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    async def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the heartbeat's loop; cancelling the caller cancels it there too."""
        if not self._started:
            self._thread.start()
            self._started = True
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    async def close(self) -> None:
        if self._started:
            self.loop.call_soon_threadsafe(self.loop.stop)
            await asyncio.to_thread(self._thread.join, 5.0)
        if not self._thread.is_alive():
            self.loop.close()
