"""Typed settings: built-in defaults, then a TOML file, then TRACKER_WATCH_* environment variables.

Every key is a field of one section dataclass below (or, for [swarm] and [verify], in config_swarm.py,
re-exported here: this module is the import point); its `doc` metadata is the documentation that
config/tracker-watch.example.toml repeats (a test keeps the two in step), and its `min`/`max` (every
number has both) or `pattern` are what config_values.py checks a value against. Environment variables are
named TRACKER_WATCH_<SECTION>_<KEY> (section names contain no underscore, so the split is unambiguous),
e.g. TRACKER_WATCH_DATABASE_DSN or TRACKER_WATCH_SWARM_LISTEN_INTERFACES="127.0.0.2:6881".
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tracker_watch.config_swarm import SwarmSettings as SwarmSettings
from tracker_watch.config_swarm import VerifySettings as VerifySettings
from tracker_watch.config_swarm import check_swarm, check_verify
from tracker_watch.config_values import ConfigError as ConfigError
from tracker_watch.config_values import EnvText, convert, name, show
from tracker_watch.config_values import doc as _doc
from tracker_watch.config_values import parse_endpoint as parse_endpoint
from tracker_watch.domain.trackers import TrackerUrlError, clean_tracker_url

ENV_PREFIX = "TRACKER_WATCH_"
# Environment variables with our prefix that are not settings.
NON_SETTING_ENV = {"CONFIG", "TEST_DSN"}
MAX_FILE_BYTES = 2**20


def _default_state_dir() -> Path:
    # systemd's StateDirectory= exports STATE_DIRECTORY; otherwise follow XDG.
    if sd := os.environ.get("STATE_DIRECTORY"):
        return Path(sd.split(":")[0])
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "tracker-watch"


@dataclass(frozen=True)
class NodeSettings:
    name: str = field(default_factory=socket.gethostname,
                      metadata=_doc("Name of this node in evidence rows, logs and metrics.",
                                    pattern=r"[A-Za-z0-9._-]{1,64}"))
    state_dir: Path = field(default_factory=_default_state_dir,
                            metadata=_doc("Directory for the embedded database, signing key and spool."))
    max_targets: int = field(default=10_000, metadata=_doc(
        "Most swarms this node monitors at once (a torrent registered by several rights holders counts once); the "
        "rest are left to other nodes.", min=1, max=1_000_000))
    lease_ttl_s: float = field(default=30.0, metadata=_doc(
        "A node that stops renewing its swarm leases loses them after this long; cut off from the database, "
        "it stops its swarms lease_ttl_s − heartbeat_s after its last heartbeat (fencing).", min=3.0, max=3600.0))
    heartbeat_s: float = field(default=10.0, metadata=_doc(
        "How often leases are renewed and free targets taken (well under lease_ttl_s).", min=0.5, max=1800.0))


@dataclass(frozen=True)
class DatabaseSettings:
    dsn: str = field(default="", metadata=_doc(
        "PostgreSQL URL. Empty: run an embedded PostgreSQL under <state_dir>/pgdata."))
    read_dsn: str = field(default="", metadata=_doc(
        "PostgreSQL URL of a read replica for the API's and console's read-only requests (GET); writes, the "
        "monitoring and the ledger jobs use database.dsn. Empty: everything uses database.dsn."))
    schema: str = field(default="tracker_watch", metadata=_doc(
        "Schema holding all tables (created if missing).", pattern=r"[a-z_][a-z0-9_]{0,62}"))
    pool_min_size: int = field(default=1, metadata=_doc("Minimum pooled connections.", min=0, max=100))
    pool_max_size: int = field(default=10, metadata=_doc("Maximum pooled connections.", min=1, max=500))
    connect_timeout_s: float = field(default=10.0, metadata=_doc(
        "Timeout for one connection attempt.", min=0.1, max=300.0))
    write_timeout_s: float = field(default=30.0, metadata=_doc(
        "A batch write taking longer counts as failed; it stays in the spool and is retried.", min=0.5, max=600.0))


@dataclass(frozen=True)
class LogSettings:
    format: Literal["auto", "json", "console"] = field(default="auto", metadata=_doc(
        "auto: readable console output on a TTY, JSON lines otherwise."))
    level: Literal["debug", "info", "warning", "error"] = field(default="info", metadata=_doc("Lowest level logged."))


@dataclass(frozen=True)
class TrackerSettings:
    enabled: bool = field(default=True, metadata=_doc("Announce to the targets' trackers and record their peer lists."))
    min_interval_s: float = field(default=60.0, metadata=_doc(
        "Never announce to a tracker more often.", min=1.0, max=86400.0))
    max_interval_s: float = field(default=1800.0, metadata=_doc(
        "Announce at least this often even when a tracker asks for longer.", min=1.0, max=86400.0))
    timeout_s: float = field(default=15.0, metadata=_doc("HTTP/UDP tracker request timeout.", min=0.1, max=300.0))
    numwant: int = field(default=200, metadata=_doc("Peers asked for per announce.", min=1, max=2000))
    extra: list[str] = field(default_factory=list, metadata=_doc(
        "Tracker URLs announced to for every target in addition to its own."))


@dataclass(frozen=True)
class EvidenceSettings:
    incident_window_s: int = field(default=86400, metadata=_doc(
        "Observations of one IP in one target within a window (aligned to the Unix epoch) form one incident.",
        min=60, max=31 * 86400))
    checkpoint_every: int = field(default=10_000, metadata=_doc(
        "Sign a chain checkpoint after this many new evidence rows …", min=1, max=1_000_000))
    checkpoint_interval_s: float = field(default=60.0, metadata=_doc("… or after this long.", min=1.0, max=86400.0))
    retention_days: int = field(default=90, metadata=_doc(
        "Personal fields of evidence that never reached 'verified' or never led to a strike are blanked after "
        "this many days (hashes stay, so the chain still verifies).", min=1, max=36_500))


@dataclass(frozen=True)
class PolicySettings:
    minimum_grade: Literal["handshake", "advertised", "verified"] = field(default="verified", metadata=_doc(
        "Lowest evidence grade that counts toward a strike (see README: only 'verified' is direct evidence)."))
    min_gap_days: int = field(default=7, metadata=_doc(
        "An incident closer than this to the last strike starts no new strike.", min=0, max=3650))
    level2_window_days: int = field(default=180, metadata=_doc(
        "Strike 2 only for an incident within this many days of strike 1; later ones start over.", min=1, max=3650))
    level3_window_days: int = field(default=365, metadata=_doc(
        "Strike 3 only for an incident within this many days of strike 2; later ones start over.", min=1, max=3650))
    referral_cooldown_days: int = field(default=365, metadata=_doc(
        "After a referral (strike 3), incidents within this many days start nothing; later ones start over.",
        min=0, max=3650))
    jurisdictions: list[str] = field(default_factory=lambda: ["KZ"], metadata=_doc(
        "ISO 3166 country codes where evidence may start strikes (empty: everywhere). Other evidence is kept."))
    test_country: str = field(default="", metadata=_doc(
        "Country assumed for loopback and private addresses (for local test swarms); empty: none, so they "
        "never count.", pattern=r"([A-Z]{2})?"))
    evaluate_interval_s: float = field(default=10.0, metadata=_doc(
        "How often new evidence is attributed to subjects and strikes are evaluated.", min=0.1, max=3600.0))


@dataclass(frozen=True)
class NoticeSettings:
    complainant_contact: str = field(default="tracker-watch operator", metadata=_doc(
        "Who sends notices (ACNS Complainant/Contact); the rights holder is the Entity."))
    complainant_email: str = field(default="notices@example.invalid", metadata=_doc(
        "Reply address in every notice.", pattern=r"[^@\s]+@[^@\s]+"))
    delivery_interval_s: float = field(default=5.0, metadata=_doc(
        "How often the outbox is worked.", min=0.1, max=3600.0))
    retry_base_s: float = field(default=30.0, metadata=_doc(
        "First retry delay of a failed delivery; it doubles each time.", min=0.1, max=86400.0))
    retry_max_s: float = field(default=3600.0, metadata=_doc("Longest retry delay.", min=1.0, max=604800.0))
    max_attempts: int = field(default=12, metadata=_doc(
        "Deliveries tried before a notice is marked failed.", min=1, max=100))
    webhook_timeout_s: float = field(default=15.0, metadata=_doc("Timeout of one webhook POST.", min=0.1, max=300.0))
    drop_file_mode: str = field(default="0640", metadata=_doc(
        "Permissions (octal) of notice files in an ISP's drop folder; with a setgid folder owned by the pickup "
        "process's group, 0640 lets that group read them.", pattern=r"0?[0-7]{3}"))


@dataclass(frozen=True)
class ApiSettings:
    enabled: bool = field(default=True, metadata=_doc("Serve the HTTP API from the daemon."))
    listen: str = field(default="127.0.0.1:8080", metadata=_doc(
        "Address (ip:port) of the HTTP API; put a TLS-terminating proxy in front of it."))
    max_body_bytes: int = field(default=32 * 2**20, metadata=_doc(
        "Largest accepted request body (a .torrent upload, a bulk registration).", min=1024, max=2**30))
    rate_per_s: float = field(default=50.0, metadata=_doc(
        "Requests per second per token (sustained).", min=0.01, max=1_000_000.0))
    burst: int = field(default=200, metadata=_doc("Requests a token may make in a burst.", min=1, max=1_000_000))
    auth_failures_per_s: float = field(default=0.2, metadata=_doc(
        "Failed authentications allowed per second per client address (IPv6: per /64) once its burst is spent; "
        "then every attempt from it is answered 429 until the bucket refills.", min=0.001, max=1_000_000.0))
    auth_failure_burst: int = field(default=20, metadata=_doc(
        "Failed authentications a client address may make in a burst.", min=1, max=1_000_000))


@dataclass(frozen=True)
class MetricsSettings:
    enabled: bool = field(default=True, metadata=_doc("Serve Prometheus metrics."))
    listen: str = field(default="127.0.0.1:9464", metadata=_doc("Address (ip:port) of /metrics."))
    per_target_limit: int = field(default=50, metadata=_doc(
        "Per-target series only for this many of the busiest targets (bounded label cardinality).", min=0,
        max=1000))
    refresh_s: float = field(default=15.0, metadata=_doc(
        "How often counts from PostgreSQL (targets, strikes, notices) are refreshed.", min=1.0, max=3600.0))
    quiet_alert_s: float = field(default=3600.0, metadata=_doc(
        "Exported for the TrackerWatchNoObservations alert: how long without any observation, while "
        "targets are active, is worth an alert.", min=60.0, max=604800.0))


@dataclass(frozen=True)
class CollectorSettings:
    batch_size: int = field(default=1000, metadata=_doc("Observations written per batch.", min=1, max=100_000))
    flush_interval_s: float = field(default=1.0, metadata=_doc(
        "Longest an observation waits before a write.", min=0.01, max=3600.0))
    reobserve_s: float = field(default=900.0, metadata=_doc(
        "A peer still present is recorded again after this long, even if nothing changed.", min=1.0, max=86400.0))
    writer: Literal["process", "task"] = field(default="process", metadata=_doc(
        "process: evidence is written by a writer process the daemon starts and restarts (its Python and "
        "PostgreSQL's work run on two cores at once; BENCHMARKS.md, Ingestion); task: by a task of the "
        "daemon's event loop. Either way a batch leaves the spool only after its commit."))


@dataclass(frozen=True)
class SpoolSettings:
    dir: str = field(default="", metadata=_doc(
        "Directory of the observation spool (write-ahead log). Empty: <state_dir>/spool."))
    max_bytes: int = field(default=2**30, metadata=_doc(
        "Largest the spool may grow while the database is away. The last 10% is kept for direct evidence; "
        "when full, new observations are dropped (counted and logged).", min=2**16, max=2**40))
    segment_bytes: int = field(default=16 * 2**20, metadata=_doc("Size of one spool file.", min=2**12, max=2**30))
    fsync_interval_s: float = field(default=0.2, metadata=_doc(
        "Longest an appended observation waits for fsync (a process crash loses nothing either way; "
        "this bounds what a power cut can take).", min=0.0, max=60.0))
    near_full_ratio: float = field(default=0.8, metadata=_doc(
        "Log an error and count a limit hit when the spool is this full.", min=0.1, max=1.0))


@dataclass(frozen=True)
class DaemonSettings:
    target_poll_s: float = field(default=2.0, metadata=_doc(
        "How often new or changed targets are picked up.", min=0.1, max=3600.0))
    shutdown_grace_s: float = field(default=10.0, metadata=_doc("Time allowed for a clean stop.", min=1.0, max=600.0))


@dataclass(frozen=True)
class Settings:
    node: NodeSettings = field(default_factory=NodeSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    log: LogSettings = field(default_factory=LogSettings)
    swarm: SwarmSettings = field(default_factory=SwarmSettings)
    trackers: TrackerSettings = field(default_factory=TrackerSettings)
    verify: VerifySettings = field(default_factory=VerifySettings)
    evidence: EvidenceSettings = field(default_factory=EvidenceSettings)
    policy: PolicySettings = field(default_factory=PolicySettings)
    notices: NoticeSettings = field(default_factory=NoticeSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    spool: SpoolSettings = field(default_factory=SpoolSettings)
    collector: CollectorSettings = field(default_factory=CollectorSettings)
    daemon: DaemonSettings = field(default_factory=DaemonSettings)


SECTIONS: dict[str, type[Any]] = typing.get_type_hints(Settings)


def load_settings(path: Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Defaults → TOML file → environment; raises ConfigError naming the offending key."""
    env = os.environ if env is None else env
    raw: dict[str, dict[str, Any]] = {}
    if path is not None:
        for section, table in _sections(_read_toml(path)).items():
            raw.setdefault(section, {}).update(table)
    for var, value in env.items():
        if not var.startswith(ENV_PREFIX) or var[len(ENV_PREFIX):] in NON_SETTING_ENV:
            continue
        section, _, key = var[len(ENV_PREFIX):].lower().partition("_")
        if section not in SECTIONS or not key:
            raise ConfigError(f"unknown environment variable {name(var)} (expected {ENV_PREFIX}<SECTION>_<KEY>)")
        raw.setdefault(section, {})[key] = EnvText(value)
    return settings_from_mapping(raw)


def _read_toml(path: Path) -> dict[str, Any]:
    where = f"config file {show(str(path))}"
    try:
        with path.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read {where}: {exc.strerror}") from exc
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(f"{where} is larger than {MAX_FILE_BYTES} bytes")
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{where} is not UTF-8 (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where} is not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{where} nests arrays or tables too deeply") from None
    except ValueError:  # an integer of more than 4300 digits
        raise ConfigError(f"{where} holds a number too long to read") from None


def _sections(doc: Any) -> Mapping[str, Mapping[str, Any]]:
    """`doc` checked to be a table of known sections, each a table."""
    if not isinstance(doc, Mapping):
        raise ConfigError(f"settings: expected a table of sections, got {show(doc)}")
    for section, table in doc.items():
        if section not in SECTIONS:
            raise ConfigError(f"unknown section [{name(section)}] (known: {', '.join(SECTIONS)})")
        if not isinstance(table, Mapping):
            raise ConfigError(f"{section}: expected a table [{section}], got {show(table)}")
    return doc


def settings_from_mapping(raw: Mapping[str, Mapping[str, Any]]) -> Settings:
    """Settings from parsed sections (TOML-typed values or EnvText); whatever `raw` holds, the only
    exception is ConfigError."""
    raw = _sections(raw)
    sections = {section: _build_section(section, cls, raw.get(section, {})) for section, cls in SECTIONS.items()}
    settings = Settings(**sections)
    _cross_checks(settings)
    return settings


def _build_section(section: str, cls: type[Any], values: Mapping[str, Any]) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(f"unknown key {section}.{name(key)} (known: {', '.join(fields)})")
        kwargs[key] = convert(f"{section}.{key}", hints[key], value, fields[key].metadata)
    return cls(**kwargs)


def _cross_checks(s: Settings) -> None:
    check_verify(s.verify)
    if s.database.pool_min_size > s.database.pool_max_size:
        raise ConfigError("database.pool_min_size: must not exceed database.pool_max_size")
    if s.trackers.min_interval_s > s.trackers.max_interval_s:
        raise ConfigError("trackers.min_interval_s: must not exceed trackers.max_interval_s")
    if s.node.heartbeat_s * 2 > s.node.lease_ttl_s:
        raise ConfigError("node.heartbeat_s: must be at most half of node.lease_ttl_s, or leases lapse between beats")
    if s.spool.segment_bytes > s.spool.max_bytes:
        raise ConfigError("spool.segment_bytes: must not exceed spool.max_bytes")
    parse_endpoint("api.listen", s.api.listen)
    parse_endpoint("metrics.listen", s.metrics.listen)
    check_swarm(s.swarm)
    for url in s.trackers.extra:
        try:
            clean_tracker_url(url)
        except TrackerUrlError as exc:
            raise ConfigError(f"trackers.extra: {exc}") from None
    for code in s.policy.jurisdictions:
        if not re.fullmatch(r"[A-Z]{2}", code):
            raise ConfigError(f"policy.jurisdictions: {show(code)} is not an ISO 3166 alpha-2 code (e.g. \"KZ\")")
    if s.database.dsn and not re.match(r"^postgres(ql)?://", s.database.dsn):
        raise ConfigError("database.dsn: expected a postgresql:// URL")
    if s.database.read_dsn and not re.match(r"^postgres(ql)?://", s.database.read_dsn):
        raise ConfigError("database.read_dsn: expected a postgresql:// URL")
    if s.database.read_dsn and not s.database.dsn:
        raise ConfigError("database.read_dsn: a read replica needs database.dsn (the primary) set too")
