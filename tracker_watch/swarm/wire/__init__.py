"""Our own peer-wire connections: one TCP connection to exactly one peer, to prove what that peer serves.

libtorrent keeps discovery (trackers, DHT, PEX) and metadata; a verification opens a dedicated
connection so every verified byte comes from one peer. See docs/verification.md.
"""

from tracker_watch.swarm.wire.client import probe
from tracker_watch.swarm.wire.errors import ProbeFailure, Reason
from tracker_watch.swarm.wire.incoming import verify_accepted
from tracker_watch.swarm.wire.result import ProbeResult, Timeouts
from tracker_watch.swarm.wire.session import PieceSpec, SessionReport, verify_on

__all__ = ["PieceSpec", "ProbeFailure", "ProbeResult", "Reason", "SessionReport", "Timeouts", "probe",
           "verify_accepted", "verify_on"]
