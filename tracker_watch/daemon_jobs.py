"""The daemon's periodic ledger jobs and start-up checks that need the database (run once it answers)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Any

from tracker_watch import log
from tracker_watch.config import Settings
from tracker_watch.domain.evidence import utc_now_ms
from tracker_watch.evidence.process_sink import ProcessSink, writer_config
from tracker_watch.ledger import retention as retention_mod
from tracker_watch.ledger.strikes import StrikeLedger

_log = log.get("tracker_watch.daemon")


async def evaluate_strikes(strikes: StrikeLedger, s: Settings) -> None:
    report = await strikes.tick()
    if report.created or report.superseded:
        _log.info("strikes_evaluated", subjects=report.subjects, created=report.created,
                  superseded=report.superseded, out_of_jurisdiction=report.out_of_jurisdiction)
    if report.out_of_jurisdiction:
        _log.info("evidence_out_of_jurisdiction", observations=report.out_of_jurisdiction,
                  jurisdictions=s.policy.jurisdictions, test_country=s.policy.test_country or None,
                  note="kept, but starts no strike; loopback and private addresses have a country only "
                       "through policy.test_country")


async def retention(pool: Any, s: Settings) -> None:
    cutoff = utc_now_ms() - timedelta(days=s.evidence.retention_days)
    async with pool.acquire() as conn:
        report = await retention_mod.purge(conn, cutoff, s.evidence.incident_window_s, dry_run=False)
    if report.incidents:
        _log.info("evidence_redacted", incidents=report.incidents, observations=report.observations)


async def warn_placeholders(s: Settings, pool: Any) -> None:
    """Loudly: a notice naming a reserved-domain address (reply or ISP abuse desk) reaches nobody who can answer."""
    from tracker_watch.domain.contacts import is_placeholder

    if is_placeholder(s.notices.complainant_email):
        _log.warning("placeholder_contact", setting="notices.complainant_email", value=s.notices.complainant_email,
                     note="every notice names this reply address; set a real one before notices reach an ISP")
    for r in await pool.fetch("SELECT name, abuse_email FROM isps WHERE abuse_email IS NOT NULL ORDER BY name"):
        if is_placeholder(r["abuse_email"]):
            _log.warning("placeholder_contact", isp=r["name"], value=r["abuse_email"],
                         note="this ISP's notices name this abuse address; `tracker-watch isp set` a real one")


async def every(seconds: float, job: Callable[[], Awaitable[None]]) -> None:
    """Run `job` every `seconds`; a failure is logged and retried at the next tick, never fatal."""
    while True:
        await asyncio.sleep(seconds)
        try:
            await job()
        except Exception as exc:
            _log.warning("periodic_job_failed", job=getattr(job, "__name__", "?"), error=str(exc)[:300])


async def name_targets(pool: Any, groups: Mapping[str, Any], owned: frozenset[int]) -> None:
    """log.TARGETS_BY_INFOHASH: the targets of the running swarms (`groups`: the watchlist's), and of those owned
    but not started yet (named once, not fetched again at every beat while thousands wait to start)."""
    names = {key: [r.target_id for r in group.refs] for key, group in groups.items()}
    known = {i for ids in names.values() for i in ids}
    for key, ids in log.TARGETS_BY_INFOHASH.items():
        if key not in names and (waiting := [i for i in ids if i in owned]):
            names[key] = waiting
            known.update(waiting)
    if new := owned - known:
        for r in await pool.fetch("SELECT id, coalesce(infohash_v1, infohash_v2) AS ih FROM targets "
                                  "WHERE id = ANY($1::bigint[])", list(new)):
            names.setdefault(bytes(r["ih"]).hex(), []).append(r["id"])
    log.TARGETS_BY_INFOHASH.clear()
    log.TARGETS_BY_INFOHASH.update(names)


async def forget_idle(collector: Any, engine: Any) -> None:
    """Drop per-peer state of peers gone quiet, so memory follows the live swarms rather than their history."""
    now = utc_now_ms()
    if collector is not None:
        collector.evict_idle(now)
    if engine is not None:
        for swarm in engine.swarms.values():
            if len(swarm.listed) >= swarm.max_peers:
                swarm.forget_listed()
            if swarm.planner is not None:
                swarm.planner.prune(now.date())


def connect_sink(sink: Any, dsn: str | None, key: bytes, s: Settings) -> None:
    """The writer process learns where to write once the database answers (a node may start without it)."""
    if isinstance(sink, ProcessSink):
        assert dsn
        sink.connect(writer_config(dsn, s.database.schema, s.node.name, key, s.evidence.incident_window_s,
                                   s.evidence.checkpoint_every, s.evidence.checkpoint_interval_s,
                                   s.database.write_timeout_s, s.log.format, s.log.level))
