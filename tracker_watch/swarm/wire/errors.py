"""Why a verification ended without a verified piece: one reason, one line of detail."""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    REFUSED = "refused"                          # TCP connection refused (closed port)
    UNREACHABLE = "unreachable"                  # other connect errors (no route, reset, …)
    TIMEOUT = "timeout"                          # a phase or the whole probe ran out of time
    CLOSED = "closed"                            # the peer closed the connection
    PROTOCOL = "protocol"                        # garbage, oversized or malformed messages
    WRONG_INFOHASH = "wrong_infohash"            # its handshake named another torrent
    SELF = "self"                                # we connected to ourselves
    HANDSHAKE_REFUSED = "handshake_refused"      # plaintext handshake dropped unanswered: needs MSE? no such
                                                 # torrent? already connected to our address?
    ENCRYPTION_REQUIRED = "encryption_required"  # the peer spoke plaintext where we required MSE
    ENCRYPTION_FAILED = "encryption_failed"      # MSE handshake failed (peer may not speak it)
    NO_SUCH_PIECE = "no_such_piece"              # it never advertised the piece we asked for
    CHOKED = "choked"                            # it never let us request (no unchoke, no allowed-fast)
    REJECTED = "rejected"                        # it kept rejecting our requests (BEP 6)
    HASH_MISMATCH = "hash_mismatch"              # it delivered the whole piece and the hash is wrong
    TOO_MUCH_DATA = "too_much_data"              # it sent more than max_bytes


class ProbeFailure(Exception):
    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class DeadlinePassed(ProbeFailure):
    """A phase's deadline (not the idle timeout) ended the wait; the session names the phase's reason."""
