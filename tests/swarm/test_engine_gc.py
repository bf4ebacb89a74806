"""A running node does not stop its loop for full garbage collections at the rate a busy node allocates.

At 5,000 busy swarms the node spent 3.3 s of its 20 s of CPU in the cyclic collector: 538 young and 11 full
collections, the longest 256 ms (BENCHMARKS.md, capacity under load). Here: once the engine runs, work shaped
like a burst of proven peers — objects that live on (one per candidate) amid many that die at once (messages,
rows) — triggers no full collection.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.conftest import SettingsFactory
from tests.swarm.helpers import EngineUnderTest

KEPT = 250_000  # candidates, swarm entries: they stay (a quarter of the old generation and more)
CHURN = 4  # short-lived objects per kept one (a message, a row, a buffer's list)


@pytest.fixture
async def eut(make_settings: SettingsFactory) -> AsyncIterator[EngineUnderTest]:
    saved = gc.get_threshold()
    e = EngineUnderTest(make_settings())
    await e.engine.start()
    yield e
    await e.engine.stop()
    gc.set_threshold(*saved)  # the rest of the test run as it was


async def test_a_burst_of_peers_triggers_no_full_collection(eut: EngineUnderTest) -> None:
    full: list[int] = []

    def count(phase: str, info: dict[str, Any]) -> None:
        if phase == "start" and info["generation"] == 2:
            full.append(1)

    gc.collect()  # start from a clean old generation, as a node that has run a while
    kept: list[dict[str, Any]] = []
    gc.callbacks.append(count)
    try:
        for i in range(KEPT):
            kept.append({"ip": i, "ports": {}})
            for _ in range(CHURN):
                [i, {}]  # noqa: B018 (allocated and dropped: what a message or a row costs the collector)
    finally:
        gc.callbacks.remove(count)
    assert len(kept) == KEPT
    assert full == [], f"{len(gc.get_objects()):,} objects tracked"
