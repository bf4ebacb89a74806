"""sd_notify as systemd sees it: a datagram socket receiving READY, WATCHDOG and STOPPING from a real daemon."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest

from tests.conftest import SettingsFactory
from tests.helpers import wait_for
from tracker_watch import systemd
from tracker_watch.daemon import Daemon


class NotifySocket:
    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.messages: list[str] = []

    def drain(self) -> list[str]:
        while True:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return self.messages


async def test_ready_watchdog_stopping(make_settings: SettingsFactory, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    listener = NotifySocket(tmp_path / "notify")
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    monkeypatch.setenv("WATCHDOG_USEC", "400000")  # WatchdogSec=0.4s: a ping every 0.2 s
    daemon = Daemon(make_settings())
    await daemon.start()
    try:
        assert listener.drain()[-1].startswith("READY=1\nSTATUS=watching")
        await asyncio.sleep(1.0)
        pings = [m for m in listener.drain() if m == "WATCHDOG=1"]
        assert len(pings) >= 3
    finally:
        await daemon.stop()
    assert listener.drain()[-1].startswith("STOPPING=1")
    ready = next(i for i, m in enumerate(listener.messages) if m.startswith("READY=1"))
    stopping = next(i for i, m in enumerate(listener.messages) if m.startswith("STOPPING=1"))
    assert ready < stopping


def test_abstract_socket_and_no_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"tw-test-{id(monkeypatch)}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    assert systemd.notify("STATUS=hello")
    assert sock.recv(100) == b"STATUS=hello"
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert not systemd.notify("READY=1")  # outside systemd: a no-op
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", "1")  # meant for another process
    assert systemd.watchdog_interval() is None
    monkeypatch.delenv("WATCHDOG_PID")
    assert systemd.watchdog_interval() == 15.0


async def test_watchdog_stops_when_the_loop_is_stuck(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    listener = NotifySocket(tmp_path / "notify")
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    task = asyncio.create_task(systemd.watchdog_loop(0.05))
    await wait_for(lambda: len(listener.drain()) >= 2, timeout=5)
    seen = len(listener.drain())
    time.sleep(0.3)  # noqa: ASYNC251 - blocking the event loop on purpose: no ping can go out
    assert len(listener.drain()) == seen
    task.cancel()
