"""The verifier's lane jobs: when a lane (swarm/lanes.py) may run for a candidate, and running it within the
day's budget, recorded exactly like a probe. A lane proves what the wire client cannot: a pure v2 swarm (its
pieces need Merkle proofs), or a peer that TCP could not reach and that may speak uTP only."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from tracker_watch import log
from tracker_watch.config import VerifySettings
from tracker_watch.domain.peers import Endpoint
from tracker_watch.swarm.candidates import SwarmView
from tracker_watch.swarm.candidates import VerifyCandidate as _Candidate
from tracker_watch.swarm.lanes import LANE_AFTER, piece_count
from tracker_watch.swarm.wire import ProbeResult

_log = log.get("tracker_watch.verify")
ProbeFn = Callable[..., Awaitable[ProbeResult]]


class LaneJobs:
    def __init__(self, settings: VerifySettings, local_ips: dict[int, str | None], session_ips: set[str],
                 lane_fn: ProbeFn, stats: dict[str, int], within_budget: Callable[[_Candidate, int], bool],
                 record: Callable[[_Candidate, Endpoint, ProbeResult, int], None],
                 finished: Callable[[_Candidate], None]) -> None:
        self.settings = settings
        self.local_ips = local_ips
        self.session_ips = session_ips
        self._lane = lane_fn
        self._lanes = asyncio.Semaphore(max(1, settings.lanes))
        self.stats = stats
        self._within_budget = within_budget
        self._record = record
        self._finished = finished

    def local_ip(self, cand: _Candidate, swarm: SwarmView) -> str | None:
        """Our address for a lane, or None if no lane may run: lanes off, no info dict, or no address of our
        own apart from the session's (a lane never dials from it: the peer may hold the session's connection)."""
        local_ip = self.local_ips[6 if ":" in cand.ip else 4]
        if self.settings.lanes == 0 or swarm.info is None or local_ip is None or local_ip in self.session_ips:
            return None
        return local_ip

    def may_run(self, cand: _Candidate, swarm: SwarmView) -> bool:
        """A lane may run for this candidate now: an address for it, and the day's budget for a whole piece."""
        return self.local_ip(cand, swarm) is not None and self._budget(swarm, cand)

    def _budget(self, swarm: SwarmView, cand: _Candidate) -> bool:
        if swarm.info is None:
            return False
        return self._within_budget(cand, piece_count(swarm.info)[1])

    async def _run(self, cand: _Candidate, swarm: SwarmView, port: int, local_ip: str) -> None:
        """One lane: it consumes the day's budget exactly like a probe and is recorded the same way."""
        assert swarm.info is not None
        cand.probes += 1
        self.stats["probes"] += 1
        self.stats["lanes"] += 1
        async with self._lanes:
            result = await self._lane(cand.ip, port, swarm.info, local_ip=local_ip,
                                      timeout=self.settings.probe_timeout_s)
        self._record(cand, (cand.ip, port), result, cand.ports.get(port, 0))

    async def verify(self, cand: _Candidate, swarm: SwarmView, port: int) -> None:
        """A lane job (pure v2): the candidate's slot is released when it ends, whatever happens."""
        try:
            if (local_ip := self.local_ip(cand, swarm)) is None:
                cand.failures += 1
                _log.info("verify_unfinished", infohash=cand.key, peer=cand.ip, reason="no_lane",
                          detail="pure v2 needs a lane: verify.lanes > 0 and a probe_interface of its own")
                return
            await self._run(cand, swarm, port, local_ip)
        except Exception as exc:
            _log.exception("verify_failed", infohash=cand.key, peer=cand.ip, error=str(exc)[:300])
            cand.failures += 1
        finally:
            self._finished(cand)

    async def after(self, cand: _Candidate, swarm: SwarmView, port: int, r: ProbeResult) -> None:
        """TCP could not reach the peer: it may speak uTP only. A lane tries, if one is free and the budget allows."""
        local_ip = self.local_ip(cand, swarm)
        if (r.reason not in LANE_AFTER or local_ip is None or self._lanes.locked() or cand.done
                or cand.probes >= self.settings.probes_per_peer_per_day or not self._budget(swarm, cand)):
            return
        await self._run(cand, swarm, port, local_ip)
