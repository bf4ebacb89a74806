"""structlog set-up: JSON lines in production, readable console output on a TTY.

Event names are stable snake_case strings (`swarm_added`, `batch_written`, ...) and context keys are the
same across the daemon: `node`, `target`, `infohash`, `peer`. Secrets never reach a log call: DSNs are
logged through `redact_dsn`, tokens not at all.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog

from tracker_watch.config import LogSettings


def configure(settings: LogSettings, node: str | None = None, stream: Any = None) -> None:
    stream = stream or sys.stdout
    use_json = settings.format == "json" or (settings.format == "auto" and not stream.isatty())
    level = getattr(logging, settings.level.upper())
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if use_json:
        processors += [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    else:
        processors += [structlog.dev.ConsoleRenderer(colors=stream.isatty())]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.clear_contextvars()
    if node:
        structlog.contextvars.bind_contextvars(node=node)


def get(name: str | None = None) -> Any:
    return structlog.get_logger(name) if name else structlog.get_logger()


def redact_dsn(dsn: str) -> str:
    """postgresql://user:secret@host/db → postgresql://user:***@host/db"""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", dsn)
