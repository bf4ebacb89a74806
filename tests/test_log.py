"""Logs: JSON whenever the stream is not a terminal, whatever log.format says; target ids on swarm lines."""

from __future__ import annotations

import io
import json

import pytest

from tracker_watch import log
from tracker_watch.config import LogSettings


@pytest.mark.parametrize("fmt", ["auto", "console", "json"])
def test_json_off_a_tty_whatever_the_config(fmt: str) -> None:
    stream = io.StringIO()  # isatty() is False, like a file, a pipe or journald
    log.configure(LogSettings(format=fmt, level="info"), node="n1", stream=stream)  # type: ignore[arg-type]
    log.TARGETS_BY_INFOHASH.update({"ab" * 20: [7], "cd" * 20: [8, 9]})
    try:
        log.get("t").info("swarm_added", infohash="ab" * 20)
        log.get("t").info("swarm_added", infohash="cd" * 20)
        log.get("t").info("other", infohash="ef" * 20)
    finally:
        log.TARGETS_BY_INFOHASH.clear()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line.get("target") for line in lines] == [7, [8, 9], None]
    assert all(line["node"] == "n1" for line in lines)
