"""Peers that dial the verifier in a burst beyond what it holds wait in the listen backlog, not hung up on.

The verifier holds INCOMING_HELD × probe_concurrency connections from peers. Every one beyond used to be
accepted and closed at once ("incoming_busy"), and that peer was proven only after a tracker listed it again
(a minute or more): at 1,000 busy swarms 314 of 2,000 peers, at 5,000 7,225 of 10,000 (BENCHMARKS.md).
"""

from __future__ import annotations

import asyncio
from typing import Any

from tests.helpers import wait_for
from tests.swarm.test_verifier import listening_verifier, running  # noqa: F401 (a fixture)
from tracker_watch.domain.peers import PieceSettled
from tracker_watch.swarm.verifier import INCOMING_HELD

PEERS = 3 * INCOMING_HELD  # probe_concurrency 1: three times what the verifier holds, dialling at once


async def test_a_burst_of_peers_beyond_the_held_ones_is_verified_on_its_own_connections(
        running: list[asyncio.Task[None]]) -> None:  # noqa: F811
    from bench.peersim import SimPeer

    async def no_outgoing(*a: Any, **kw: Any) -> Any:
        raise AssertionError("every peer here is proven on the connection it opened")

    v, port, torrent, _, events = await listening_verifier(running, no_outgoing, 3002)
    peers = [SimPeer(f"127.1.202.{i + 1}", {torrent.info_hash: torrent}, "http://127.0.0.1:9/announce",
                     peer_id=b"-SIM001-" + f"{i:012d}".encode()) for i in range(PEERS)]
    dials = [asyncio.create_task(p._dial(("127.0.0.3", port), bytes(torrent.info_hash), set())) for p in peers]
    try:
        # each dial ends verified, or hung up on (counted busy): wait for all of them either way
        await wait_for(lambda: v.stats["verified"] + v.stats["incoming_busy"] >= PEERS
                       or all(d.done() for d in dials), timeout=120)
        await wait_for(lambda: v.stats["verified"] >= PEERS or all(d.done() for d in dials), timeout=120)
        assert v.stats["incoming_busy"] == 0
        assert v.stats["verified"] == PEERS
        proven = {e.contributions[0][0][0] for e in events if isinstance(e, PieceSettled) and e.passed}
        assert proven == {p.ip for p in peers}
    finally:
        for d in dials:
            d.cancel()
        await asyncio.gather(*dials, return_exceptions=True)
        await v.close()
