"""Logs: JSON whenever the stream is not a terminal, whatever log.format says; target ids on swarm lines."""

from __future__ import annotations

import io
import json

import pytest
import structlog
import structlog.testing

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


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    for line in lines:
        assert line.pop("timestamp")
    return lines


def test_the_assembled_logger_writes_what_structlog_s_own_proxy_writes() -> None:
    """`log.get` keeps its logger between calls (not rebuilt per call, as structlog's proxy does): the lines
    are the same, key for key, filtered levels and context variables included."""
    out: dict[str, list[dict[str, object]]] = {}
    log.TARGETS_BY_INFOHASH.update({"ab" * 20: [7]})
    try:
        for name, make in (("ours", log.get), ("structlog", structlog.get_logger)):
            stream = io.StringIO()
            log.configure(LogSettings(format="json", level="info"), node="n1", stream=stream)
            logger = make("tracker_watch.x")
            logger.debug("filtered_out", infohash="ab" * 20)
            logger.info("swarm_added", infohash="ab" * 20, peers=3, note=None)
            with structlog.contextvars.bound_contextvars(process="writer"):
                logger.warning("batch_write_failed", error="away", retry_in_s=0.5)
            logger.bind(spool="/s").error("spool_sync_failed", error="No space left on device")
            try:
                raise ValueError("boom")
            except ValueError:
                logger.exception("unexpected")
            out[name] = _lines(stream)
    finally:
        log.TARGETS_BY_INFOHASH.clear()
    assert out["ours"] == out["structlog"]
    assert [line["event"] for line in out["ours"]] == ["swarm_added", "batch_write_failed", "spool_sync_failed",
                                                        "unexpected"]


def test_a_kept_logger_follows_a_new_configuration() -> None:
    logger = log.get("tracker_watch.x")  # made once, as modules do at import
    first, second = io.StringIO(), io.StringIO()
    log.configure(LogSettings(format="json", level="info"), node="n1", stream=first)
    logger.info("one")
    log.configure(LogSettings(format="json", level="warning"), node="n2", stream=second)
    logger.info("filtered_now")
    logger.warning("two")
    with structlog.testing.capture_logs() as captured:  # as tests capture: structlog.configure under the hood
        logger.warning("three")
    logger.warning("four")
    assert [(line["event"], line["node"]) for line in _lines(first)] == [("one", "n1")]
    assert [(line["event"], line["node"]) for line in _lines(second)] == [("two", "n2"), ("four", "n2")]
    assert [c["event"] for c in captured] == ["three"]
