"""Fixtures shared by the swarm tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.conftest import SettingsFactory
from tests.swarm.helpers import EngineUnderTest


@pytest.fixture
async def eut(make_settings: SettingsFactory) -> AsyncIterator[EngineUnderTest]:
    """A started engine on the test settings (the monitor's session on 127.0.0.2), stopped afterwards."""
    e = EngineUnderTest(make_settings())
    await e.engine.start()
    yield e
    await e.engine.stop()
