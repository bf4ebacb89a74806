"""libtorrent alerts into asyncio without polling.

libtorrent writes a byte to a pipe (`set_alert_fd`) when its alert queue goes from empty to non-empty;
the event loop watches the pipe's read end (`add_reader`), drains it and pops every alert at once.
Alerts are non-owning views into libtorrent's memory: the handler must copy what it needs before it
returns, because the next pop frees them.

A batch is handed to the handler CHUNK alerts at a time, one chunk per event-loop turn: at 10,000 busy swarms
one pop brought thousands (connections, blocks, metadata arrivals, each a few round trips into libtorrent) and
held the loop for up to 2 s. The next pop waits until the batch is done, so its alerts stay valid meanwhile;
libtorrent queues up to `swarm.alert_queue_size` alerts in the meantime.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

from tracker_watch import log

_log = log.get("tracker_watch.swarm")
CHUNK = 256  # alerts handled per loop turn (a metadata arrival costs ~0.2 ms of the loop: ~50 ms a chunk)


class AlertPump:
    def __init__(self, session: Any, handler: Callable[[list[Any]], None]) -> None:
        self._session = session
        self._handler = handler
        self._loop: asyncio.AbstractEventLoop | None = None
        self._read_fd = self._write_fd = -1
        self.batches = 0
        self.alerts = 0
        self._batch: list[Any] = []  # being handled, from _next on; the next pop waits until it is done
        self._next = 0
        self._woken = False  # libtorrent signalled while a batch was being handled: pop again after it
        self._stopped = False

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)  # libtorrent must never block on a full pipe
        self._session.set_alert_fd(self._write_fd)
        loop.add_reader(self._read_fd, self._on_readable)
        # alerts queued before set_alert_fd produced no wake-up byte; take them now
        self._on_readable()

    def _on_readable(self) -> None:
        try:
            while os.read(self._read_fd, 4096):
                pass
        except BlockingIOError:
            pass
        self._pop()

    def _pop(self) -> None:
        if self._stopped:
            return
        if self._next < len(self._batch):  # a pop now would free the alerts not handled yet
            self._woken = True
            return
        self._woken = False
        alerts = self._session.pop_alerts()
        if not alerts:
            return
        self.batches += 1
        self.alerts += len(alerts)
        self._batch, self._next = alerts, 0
        self._chunk()

    def _chunk(self) -> None:
        """Handle the batch's next CHUNK alerts; the rest on a later loop turn, then any batch that waited."""
        start = self._next
        if start >= len(self._batch):
            return  # finished by stop()
        self._next = end = start + CHUNK
        self._handle(self._batch[start:end])
        assert self._loop is not None
        if end < len(self._batch):
            self._loop.call_soon(self._chunk)
            return
        self._batch, self._next = [], 0
        if self._woken:
            self._loop.call_soon(self._pop)

    def _handle(self, alerts: list[Any]) -> None:
        try:
            self._handler(alerts)
        except Exception:  # a bug in one handler must not stop the pump for every swarm
            _log.exception("alert_handler_failed")

    def stop(self) -> None:
        """Stop watching. The pipe stays open until `close`, after the session is gone, since libtorrent
        may still write to it from its own thread until then."""
        if self._loop is not None and self._read_fd >= 0:
            self._loop.remove_reader(self._read_fd)
            self._stopped = True
            self._handle(self._batch[self._next:])  # the rest of a batch first: the final pop frees it
            self._batch, self._next = [], 0
            self._handle(self._session.pop_alerts())

    def close(self) -> None:
        for fd in (self._read_fd, self._write_fd):
            if fd >= 0:
                os.close(fd)
        self._read_fd = self._write_fd = -1
