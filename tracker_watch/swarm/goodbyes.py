"""event=stopped announces (BEP 3) for the (swarm, tracker, infohash) we stop announcing.

Without one a tracker lists the monitor for its whole peer lifetime after we stopped watching: other peers,
and the node that takes the swarm over, keep dialling a dead address. Best-effort and bounded: sent by a few
workers taking the announcer's turns (IN_FLIGHT), each with the announce deadline; at shutdown, what does not
fit in a short overall deadline is dropped and counted, so a node stopping 10,000 swarms never waits minutes.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp

from tracker_watch import log
from tracker_watch.domain import tracker_proto as tp
from tracker_watch.domain.trackers import redact

_log = log.get("tracker_watch.swarm")
STOP_DEADLINE_S = 3.0  # at shutdown, for all of them together


@dataclass(frozen=True)
class Goodbye:
    key: str
    url: str
    request: tp.AnnounceRequest  # event=stopped, with the started announce's peer id, key and port


class Goodbyes:
    def __init__(self, send: Callable[[str, tp.AnnounceRequest], Awaitable[object]], turns: asyncio.Semaphore,
                 timeout_s: float, workers: int, tracked_again: Callable[[Goodbye], bool]) -> None:
        self._send = send
        self._turns = turns  # shared with the regular announces: the HTTP client's connections
        self._timeout_s = timeout_s
        self._max_workers = workers
        self._tracked_again = tracked_again  # announced again since (a lease regained): "started" must stand
        self._queue: deque[Goodbye] = deque()
        self._workers: set[asyncio.Task[None]] = set()
        self.sent = self.failed = self.dropped = self.skipped = 0

    def add(self, items: list[Goodbye]) -> None:
        self._queue.extend(items)
        # a worker per queued goodbye up to the cap: the queue only empties once they run, so counting it here
        # started the whole cap's worth of workers for a single goodbye
        for _ in range(min(len(self._queue), self._max_workers - len(self._workers))):
            task = asyncio.create_task(self._work(), name="announce-stopped")
            self._workers.add(task)
            task.add_done_callback(self._workers.discard)

    async def _work(self) -> None:
        while self._queue:
            g = self._queue.popleft()
            if self._tracked_again(g):
                self.skipped += 1
                continue
            try:
                async with self._turns, asyncio.timeout(self._timeout_s * 2):
                    await self._send(g.url, g.request)
            except asyncio.CancelledError:
                self.dropped += 1  # shutdown's deadline passed with this one taken
                raise
            except (tp.TrackerError, OSError, TimeoutError, aiohttp.ClientError, ValueError) as exc:
                self.failed += 1
                _log.debug("announce_stopped_failed", infohash=g.key, tracker=redact(g.url),
                           error=(str(exc) or type(exc).__name__)[:200])
            else:
                self.sent += 1

    async def close(self, deadline_s: float = STOP_DEADLINE_S) -> None:
        """Send what fits in deadline_s; drop the rest and say how many."""
        if self._workers:
            await asyncio.wait(set(self._workers), timeout=deadline_s)
        workers = list(self._workers)
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        self.dropped += len(self._queue)
        self._queue.clear()
        if self.sent or self.failed or self.dropped:
            _log.info("announces_stopped", sent=self.sent, failed=self.failed, dropped=self.dropped,
                      skipped=self.skipped, deadline_s=deadline_s)
