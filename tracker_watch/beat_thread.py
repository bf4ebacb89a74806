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
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from tracker_watch import log

T = TypeVar("T")
_log = log.get("tracker_watch.daemon")


class BeatThread:
    def __init__(self, name: str = "lease-heartbeat") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = False
        self._one = asyncio.Lock()  # one beat at a time (periodic and early ones); used on this loop only

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    async def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the heartbeat's loop; cancelling the caller cancels it there too."""
        if not self._started:
            self._thread.start()
            self._started = True
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    async def one_at_a_time(self, job: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """(On this loop.) Run `job` when no other job of `one_at_a_time` runs."""
        async with self._one:
            return await job()

    async def every(self, seconds: float, job: Callable[[], Coroutine[Any, Any, T]], then: Callable[[T], None]) -> None:
        """Run `job` on this loop every `seconds`, at a fixed rate, one at a time with the others; hand each result to
        `then` on the caller's loop. The schedule never waits for a turn of the caller's loop (the heartbeat's must
        not: on a starved main loop a timer firing late made the beat late). A failure is logged, not fatal."""
        caller = asyncio.get_running_loop()

        async def run() -> None:
            loop = asyncio.get_running_loop()
            next_at = loop.time() + seconds
            while True:
                await asyncio.sleep(max(0.0, next_at - loop.time()))
                next_at = loop.time() + seconds
                try:
                    result = await self.one_at_a_time(job)
                except Exception as exc:
                    _log.warning("periodic_job_failed", job=getattr(job, "__name__", "?"), error=str(exc)[:300])
                    continue
                caller.call_soon_threadsafe(then, result)

        await self.call(run())

    async def close(self) -> None:
        if self._started:
            self.loop.call_soon_threadsafe(self.loop.stop)
            await asyncio.to_thread(self._thread.join, 5.0)
        if not self._thread.is_alive():
            self.loop.close()
