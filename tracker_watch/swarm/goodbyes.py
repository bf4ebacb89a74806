"""event=stopped announces (BEP 3) for the (swarm, tracker, infohash) we stop announcing.

Without one a tracker lists the monitor for its whole peer lifetime after we stopped watching: other peers,
and the node that takes the swarm over, keep dialling a dead address. Best-effort and bounded: sent by a few
workers taking the announcer's turns (IN_FLIGHT), each with the announce deadline; at shutdown, what does not
fit in a short overall deadline is dropped and counted, so a node stopping 10,000 swarms never waits minutes.

While the node runs, goodbyes take at most a quarter of the turns: thousands of them to a tracker that never
answers would otherwise hold every turn for two deadlines each, and the swarms still watched could not announce.
At the node's stop nothing else announces, so they may take every turn. A swarm tracked again while its
goodbye is in flight sends its new "started" only once that goodbye is answered or failed: a tracker that got
the "started" first and the "stopped" after would unlist the swarm we watch again.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp

from tracker_watch import log, metrics
from tracker_watch.domain import tracker_proto as tp
from tracker_watch.domain.trackers import redact

_log = log.get("tracker_watch.swarm")
STOP_DEADLINE_S = 3.0  # at shutdown, for all of them together


@dataclass(frozen=True)
class Goodbye:
    key: str
    url: str
    request: tp.AnnounceRequest  # event=stopped, with the started announce's peer id, key and port


Pair = tuple[str, str, bytes]  # (swarm key, tracker URL, infohash)


class Goodbyes:
    def __init__(self, send: Callable[[str, tp.AnnounceRequest], Awaitable[object]], turns: asyncio.Semaphore,
                 timeout_s: float, workers: int, tracked_again: Callable[[Goodbye], bool]) -> None:
        self._send = send
        self._turns = turns  # shared with the regular announces: the HTTP client's connections
        self._timeout_s = timeout_s
        self._closing_workers = workers  # at the stop: every turn
        self._max_workers = max(1, workers // 4)  # while running: the watched swarms keep the rest
        self._tracked_again = tracked_again  # announced again since (a lease regained): "started" must stand
        self._queue: deque[Goodbye] = deque()
        self._workers: set[asyncio.Task[None]] = set()
        self._in_flight: dict[Pair, asyncio.Future[None]] = {}
        self.sent = self.failed = self.dropped = self.skipped = self.waited = 0

    def add(self, items: list[Goodbye]) -> None:
        self._queue.extend(items)
        self._spawn()

    def _spawn(self) -> None:
        # a worker per queued goodbye up to the cap: the queue only empties once they run, so counting it here
        # started the whole cap's worth of workers for a single goodbye
        for _ in range(min(len(self._queue), self._max_workers - len(self._workers))):
            task = asyncio.create_task(self._work(), name="announce-stopped")
            self._workers.add(task)
            task.add_done_callback(self._workers.discard)

    async def settled(self, key: str, url: str, info_hash: bytes) -> None:
        """Return once no goodbye of this (swarm, tracker, infohash) is in flight: a "started" sent meanwhile
        could reach the tracker before it, and be undone by it."""
        if (done := self._in_flight.get((key, url, info_hash))) is not None:
            self.waited += 1
            await asyncio.wait([done])  # not `await done`: a cancelled waiter must not cancel the goodbye's mark

    async def _work(self) -> None:
        while self._queue:
            g = self._queue.popleft()
            if self._tracked_again(g):
                self.skipped += 1
                continue
            pair = (g.key, g.url, g.request.info_hash)
            self._in_flight[pair] = mark = asyncio.get_running_loop().create_future()
            try:
                await self._say(g)
            finally:
                mark.set_result(None)
                if self._in_flight.get(pair) is mark:
                    del self._in_flight[pair]

    async def _say(self, g: Goodbye) -> None:
        try:
            async with self._turns, asyncio.timeout(self._timeout_s * 2):
                await self._send(g.url, g.request)
        except asyncio.CancelledError:
            self._count("dropped")  # shutdown's deadline passed with this one taken
            raise
        except (tp.TrackerError, OSError, TimeoutError, aiohttp.ClientError, ValueError) as exc:
            self._count("failed")
            _log.debug("announce_stopped_failed", infohash=g.key, tracker=redact(g.url),
                       error=(str(exc) or type(exc).__name__)[:200])
        else:
            self._count("sent")

    def _count(self, outcome: str) -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)
        metrics.ANNOUNCES.labels(event="stopped", result="ok" if outcome == "sent" else outcome).inc()

    async def close(self, deadline_s: float = STOP_DEADLINE_S) -> None:
        """Send what fits in deadline_s; drop the rest and say how many."""
        self._max_workers = self._closing_workers  # nothing else announces any more
        self._spawn()
        if self._workers:
            await asyncio.wait(set(self._workers), timeout=deadline_s)
        workers = list(self._workers)
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        if self._queue:
            self.dropped += len(self._queue)
            metrics.ANNOUNCES.labels(event="stopped", result="dropped").inc(len(self._queue))
        self._queue.clear()
        if self.sent or self.failed or self.dropped:
            _log.info("announces_stopped", sent=self.sent, failed=self.failed, dropped=self.dropped,
                      skipped=self.skipped, deadline_s=deadline_s)
