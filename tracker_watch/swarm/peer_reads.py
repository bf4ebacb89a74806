"""Peer lists read off the event loop.

`handle.get_peer_info()` is a round trip to libtorrent's network thread; at thousands of busy torrents that thread
answers late (up to 174 ms at 5,000 under the peer simulator's burst), and on the loop every such wait stopped
everything else. The bindings release the GIL while they wait, so one worker thread does the waiting instead.

One thread, not one job per swarm: samples that fall due together go in one job that reads many handles (bounded
by BATCH), so 10,000 swarms never queue 10,000 thread jobs, and the network thread is asked one at a time as
before. Each result goes back to the loop as its own callback (as each timer-driven sample was), where the caller
checks it is still current: the swarm may have stopped or been re-added while its read was in flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

BATCH = 64  # handles per thread job: results come back in steps, and no one job holds many swarms' results

PeerList = list[Any] | None  # libtorrent peer_info objects (owned copies), or None: the read failed
Done = Callable[[PeerList], None]


def _read(handles: list[Any]) -> list[PeerList]:
    """In the worker thread: `get_peer_info()` returns a list of owned peer_info copies (the bindings copy each
    element out of the vector), so the loop may read them afterwards without touching libtorrent again."""
    out: list[PeerList] = []
    for handle in handles:
        try:
            out.append(handle.get_peer_info())
        except Exception:  # a removed torrent's handle raises; its result is discarded anyway
            out.append(None)
    return out


class PeerReads:
    """Owned by the engine; closed (and its in-flight job awaited) before the session goes."""

    def __init__(self) -> None:
        self._due: list[tuple[Any, Done]] = []
        self._drain_task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self.jobs = 0  # thread jobs run (tests and benches: how many reads were coalesced)

    def read(self, handle: Any, done: Done) -> None:
        """Read `handle`'s peers in the worker thread; `done` runs on the loop with the result."""
        self._due.append((handle, done))
        if self._drain_task is None:
            self._drain_task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._due:
                batch, self._due = self._due[:BATCH], self._due[BATCH:]
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="peer-reads")
                self.jobs += 1
                results = await loop.run_in_executor(self._executor, _read, [h for h, _ in batch])
                for (_, done), peers in zip(batch, results, strict=True):
                    loop.call_soon(done, peers)
        finally:
            self._drain_task = None

    async def close(self) -> None:
        """Drop reads not yet started (their swarms are stopping), wait out the one in the thread (no read may
        still be asking a session being destroyed), and let the thread go."""
        self._due.clear()
        if self._drain_task is not None:
            await asyncio.gather(self._drain_task, return_exceptions=True)
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
