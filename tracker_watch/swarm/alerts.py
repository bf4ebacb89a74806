"""libtorrent alerts into asyncio without polling.

libtorrent writes a byte to a pipe (`set_alert_fd`) when its alert queue goes from empty to non-empty;
the event loop watches the pipe's read end (`add_reader`), drains it and pops every alert at once.
Alerts are non-owning views into libtorrent's memory: the handler must copy what it needs before it
returns, because the next pop frees them.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

from tracker_watch import log

_log = log.get("tracker_watch.swarm")


class AlertPump:
    def __init__(self, session: Any, handler: Callable[[list[Any]], None]) -> None:
        self._session = session
        self._handler = handler
        self._loop: asyncio.AbstractEventLoop | None = None
        self._read_fd = self._write_fd = -1
        self.batches = 0
        self.alerts = 0

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
        alerts = self._session.pop_alerts()
        if not alerts:
            return
        self.batches += 1
        self.alerts += len(alerts)
        try:
            self._handler(alerts)
        except Exception:  # a bug in one handler must not stop the pump for every swarm
            _log.exception("alert_handler_failed")

    def stop(self) -> None:
        """Stop watching. The pipe stays open until `close`, after the session is gone, since libtorrent
        may still write to it from its own thread until then."""
        if self._loop is not None and self._read_fd >= 0:
            self._loop.remove_reader(self._read_fd)
            self._on_readable_final()

    def _on_readable_final(self) -> None:
        try:
            self._handler(self._session.pop_alerts())
        except Exception:
            _log.exception("alert_handler_failed")

    def close(self) -> None:
        for fd in (self._read_fd, self._write_fd):
            if fd >= 0:
                os.close(fd)
        self._read_fd = self._write_fd = -1
