"""The open-file limit a node needs, and raising the process's own limit towards it at start.

Every peer connection is a descriptor: libtorrent's (it silently caps connections_limit at 80 % of
RLIMIT_NOFILE) and the verifier's own (its probes and the peers that dial its listener). A shell's or a
container's default (1,024, or 20,000 on the benchmark machine) lowers connections_limit long before
10,000 busy swarms. The soft limit may be raised up to the hard one by anyone; the hard one only with
CAP_SYS_RESOURCE (root outside the systemd unit, whose LimitNOFILE= is sized from files_needed()).
"""

from __future__ import annotations

import math
import resource
from pathlib import Path

from tracker_watch import log
from tracker_watch.config import SwarmSettings, VerifySettings
from tracker_watch.swarm.verifier import INCOMING_HELD

_log = log.get("tracker_watch.fdlimit")

LIBTORRENT_SHARE = 0.8  # libtorrent keeps connections_limit ≤ 80 % of RLIMIT_NOFILE (session_impl)
LANE_FILES = 16  # a lane is a single-peer session: its listen sockets, one peer, its files
RESERVE = 1024  # trackers (one HTTP connection per announce in flight), the database pools, API, spool, logs
NR_OPEN = Path("/proc/sys/fs/nr_open")  # the kernel's ceiling for any process's limit


def files_needed(swarm: SwarmSettings, verify: VerifySettings) -> int:
    """Descriptors for the configured connection limits: libtorrent's share, the verifier's probes and
    held incoming peers (INCOMING_HELD × probe_concurrency), the lanes, and a fixed reserve."""
    verifier = verify.probe_concurrency * (1 + INCOMING_HELD)
    return math.ceil(swarm.connections_limit / LIBTORRENT_SHARE) + verifier + verify.lanes * LANE_FILES + RESERVE


def raise_open_files(need: int) -> int:
    """Raise RLIMIT_NOFILE's soft limit to `need` (the hard one too when the process may): never lowers
    either. Returns the soft limit now held; logs what it changed, or a warning when it falls short."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return soft
    if hard != resource.RLIM_INFINITY and hard < need:
        ceiling = _nr_open()
        try:  # succeeds only with CAP_SYS_RESOURCE
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, ceiling), min(need, ceiling)))
            hard = min(need, ceiling)
        except (ValueError, OSError):
            pass
    new_soft = need if hard == resource.RLIM_INFINITY else min(need, hard)
    if new_soft > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (new_soft, hard))
    held = resource.getrlimit(resource.RLIMIT_NOFILE)
    if held[0] < need:
        _log.warning("open_files_limit_short", need=need, soft=held[0], hard=held[1], was=soft)
    else:
        _log.info("open_files_limit_raised", need=need, soft=held[0], hard=held[1], was=soft)
    return held[0]


def _nr_open() -> int:
    try:
        return int(NR_OPEN.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 1_048_576  # the kernel's default
