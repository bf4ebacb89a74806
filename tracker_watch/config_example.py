"""config/tracker-watch.example.toml, generated from the settings' own defaults and documentation.

Kept apart from config.py, which holds the settings and their loading: this is only their rendering.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from tracker_watch.config import SECTIONS
from tracker_watch.config_values import range_text


def describe() -> list[tuple[str, str, Any, str]]:
    """(section, key, default, doc) for every setting: the source of the example file's comments."""
    rows = []
    for name, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            factory = f.default_factory
            default = factory() if callable(factory) else f.default
            rows.append((name, f.name, default, f.metadata.get("doc", "")))
    return rows


_FIELDS = {(name, f.name): f for name, cls in SECTIONS.items() for f in dataclasses.fields(cls)}

# Values config/tracker-watch.example.toml shows instead of the defaults: a production node.
PRODUCTION_EXAMPLE: dict[tuple[str, str], Any] = {
    ("node", "name"): "monitor-1",
    ("node", "state_dir"): "/var/lib/tracker-watch",
    ("database", "dsn"): "postgresql://tracker_watch@db.internal:5432/tracker_watch",
    ("log", "format"): "json",
    ("swarm", "dht_bootstrap_nodes"): ["router.bittorrent.com:6881", "dht.transmissionbt.com:6881",
                                       "router.utorrent.com:6881"],
    ("swarm", "payload_dir"): "/run/tracker-watch",
}
_EXAMPLE_HEADER = """\
# tracker-watch — production configuration example.
#
# Every key is listed with its built-in default and what it does. Values set here override the
# defaults; environment variables TRACKER_WATCH_<SECTION>_<KEY> override this file
# (e.g. TRACKER_WATCH_DATABASE_DSN). Lists in environment variables are comma-separated.
# Numbers must be finite and within the range shown (both ends included); a value outside it stops
# tracker-watch at start with one line naming the key (exit code 2).
#
# This example names public DHT routers and listens on all interfaces: it is for a production node,
# never for tests or demos (those use config/tracker-watch.local.toml or the demo's own settings).
# Generated from tracker_watch/config_example.py: TW_UPDATE_EXAMPLE=1 pytest tests/test_config.py
"""


def render_example() -> str:
    """The text of config/tracker-watch.example.toml (a test keeps the file equal to this)."""

    def toml(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, list):
            return json.dumps(v)
        return json.dumps(str(v))

    out, section = [_EXAMPLE_HEADER], None
    for sec, key, default, doc in describe():
        if sec != section:
            out.append(f"\n[{sec}]")
            section = sec
        shown = {("node", "name"): "the host name",
                 ("node", "state_dir"): "$STATE_DIRECTORY, else ~/.local/state/tracker-watch"}.get((sec, key))
        out += [f"# {doc}", f"# default: {shown or toml(default)}"]
        if allowed := range_text(_FIELDS[sec, key].metadata):
            out.append(f"# range: {allowed}")
        out.append(f"{key} = {toml(PRODUCTION_EXAMPLE.get((sec, key), default))}")
    return "\n".join(out) + "\n"
