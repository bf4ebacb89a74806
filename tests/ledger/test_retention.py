"""The daemon's hourly purge runs at every end of the configured ranges of retention and incident window.

Before the ranges, evidence.retention_days = 1000000 was accepted and then every purge raised
(`now - timedelta(days=…)` leaves the calendar), so nothing was ever redacted.
"""

from __future__ import annotations

import dataclasses

import pytest

from tests.conftest import SettingsFactory
from tests.ledger.test_chain_db import build_chain
from tracker_watch.config import EvidenceSettings
from tracker_watch.daemon import Daemon

_META = {f.name: f.metadata for f in dataclasses.fields(EvidenceSettings)}


@pytest.mark.parametrize("bound", ["min", "max"])
async def test_hourly_purge_at_the_ends_of_the_ranges(make_settings: SettingsFactory, bound: str) -> None:
    daemon = Daemon(make_settings(evidence={"retention_days": _META["retention_days"][bound],
                                            "incident_window_s": _META["incident_window_s"][bound]}))
    await daemon.db.start()
    try:
        await build_chain(daemon.db)
        await daemon._retention()
        # the evidence was just written: even the shortest retention keeps it
        assert await daemon.db.pool.fetchval("SELECT count(*) FROM observations WHERE redacted_at IS NOT NULL") == 0
    finally:
        await daemon.db.stop()
