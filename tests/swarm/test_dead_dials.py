"""A listed address that never answers (a stopped monitor the tracker still lists, a decoy) must not hold a wanted
piece, and so the payload, past its dial grace: real libtorrent, a real refused port, a real partial seeder."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from datetime import date

import pytest

from tests.conftest import SettingsFactory
from tests.swarm.helpers import EngineUnderTest, wait_for
from tracker_watch.demo.swarm import LocalSwarm
from tracker_watch.domain.evidence import Source, utc_now_ms
from tracker_watch.domain.peers import Endpoint
from tracker_watch.swarm.planner import PiecePlanner

SEEDER_IP = "127.0.0.141"  # this module's own addresses (others: see tests/swarm/test_engine.py)
DEAD_IP = "127.0.0.142"
GRACE_S = 2.0


@pytest.fixture
def dead() -> Iterator[Endpoint]:
    """A port bound but never listening: every dial to it is refused, and nobody else can take it meanwhile."""
    sock = socket.socket()
    sock.bind((DEAD_IP, 0))
    yield DEAD_IP, sock.getsockname()[1]
    sock.close()


@pytest.fixture
async def eut(make_settings: SettingsFactory) -> AsyncIterator[EngineUnderTest]:
    e = EngineUnderTest(make_settings(verify={"method": "session"}))  # libtorrent verifies: the planner decides
    # short graces, and a redial period shorter than the grace, as in the tests' daemon settings (redial_s 5 s
    # against a 30 s grace): a listed address is offered again while its grace still runs
    e.engine.planner_factory = lambda n, size: PiecePlanner(n, size, max_attempts=2, dial_grace_s=GRACE_S,
                                                            redial_s=GRACE_S / 4)
    await e.engine.start()
    yield e
    await e.engine.stop()


async def test_a_dial_never_answered_stops_holding_its_piece_when_its_grace_ends(
        eut: EngineUnderTest, local_swarm: LocalSwarm, dead: Endpoint) -> None:
    swarm = eut.watch_magnet(local_swarm, with_info=True)  # nobody connected, and nobody will be
    planner = swarm.planner
    assert planner is not None
    # longer than the samples a dial sets off (its connection alert, then retries while it is pending)
    planner.dial_grace_s = 4 * GRACE_S
    swarm.request_sample(0.0)  # a sample is due before the grace ends: the one timer keeps the earliest request
    eut.engine.add_peer(swarm.key, dead, Source.TRACKER, local_swarm.tracker.url)
    assert dead in planner.assigned.values()
    # the dial is refused at once; once the grace is over the piece wanted for it is wanted no more
    await wait_for(lambda: not planner.assigned and not planner.dialling, timeout=planner.dial_grace_s + 30)
    assert not planner.wanted


async def test_an_address_listed_again_and_again_that_never_answers_rests_after_its_attempts(
        eut: EngineUnderTest, make_settings: SettingsFactory, dead: Endpoint) -> None:
    # a partial seeder: once verified (its one piece), the pieces it lacks are the ones wanted for the dead
    # address (planner._choose prefers those), so nobody ever serves them and no attempt is ever counted that way
    partial = await LocalSwarm(seeders=1, partial={0: 0.3}, decoy=False, seeder_addresses=[SEEDER_IP]).start()
    try:
        swarm = eut.watch_magnet(partial, with_info=True)
        planner = swarm.planner
        assert planner is not None
        seeder = (SEEDER_IP, partial.peers[0].port)
        eut.engine.add_peer(swarm.key, seeder, Source.TRACKER, partial.tracker.url)
        await wait_for(lambda: planner._budget(seeder, _today()).pieces >= 1, timeout=60)

        async def list_it_again() -> None:  # every announce names it again, more often than its grace lasts
            while True:
                for peer in (dead, seeder):
                    eut.engine.add_peer(swarm.key, peer, Source.TRACKER, partial.tracker.url)
                await asyncio.sleep(GRACE_S / 4)

        lister = asyncio.create_task(list_it_again())
        try:
            await wait_for(lambda: planner._ip(DEAD_IP, _today()).attempts >= planner.max_attempts, timeout=60)
            # nothing is wanted any more (the seeder is spent, the dead address rests): the payload goes
            await wait_for(lambda: eut.engine.recycled >= 1, timeout=60)
        finally:
            lister.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await lister
    finally:
        await partial.stop()


def _today() -> date:
    return utc_now_ms().date()
