"""The rules that turn peer events into observation rows (pure: no libtorrent, no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tracker_watch.domain.evidence import Grade, Observation, Source
from tracker_watch.domain.peers import PeerGone, PeerListed, PeerSnapshot, PieceSettled
from tracker_watch.evidence.collector import Collector, TargetRef

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
PEER = ("127.0.0.11", 6881)
PID = b"-LT2110-abcdefabcdef"


def collector() -> tuple[Collector, list[Observation]]:
    rows: list[Observation] = []
    c = Collector("n1", "tw/test", rows.append, reobserve_s=900, change_gap_s=60)
    c.set_targets("s", [TargetRef(1, b"\x01" * 20, None), TargetRef(2, b"\x01" * 20, None)])
    return c, rows


def snap(at: datetime, pieces: int | None = 10, peer: tuple[str, int] = PEER) -> PeerSnapshot:
    return PeerSnapshot("s", peer, at, True, False, 1, PID, "libtorrent/2.1.1.0", pieces, 32, ("127.0.0.2", 6881))


def test_listed_only_is_never_more_than_listed() -> None:
    c, rows = collector()
    for i in range(10):
        c.handle(PeerListed("s", ("127.0.0.66", 6999), Source.TRACKER, T0 + timedelta(seconds=i), "http://t/announce"))
    c.handle(PeerGone("s", ("127.0.0.66", 6999), T0, None, connect_failed=True))
    assert {o.grade for o in rows} == {Grade.LISTED}
    assert len(rows) == 2  # one row per target, not one per announce
    assert {o.target_id for o in rows} == {1, 2}
    assert rows[0].tracker_url == "http://t/announce"


def test_grade_rises_with_direct_evidence() -> None:
    c, rows = collector()
    c.handle(PeerListed("s", PEER, Source.TRACKER, T0, "http://t/announce"))
    c.handle(snap(T0 + timedelta(seconds=1), pieces=0))
    c.handle(snap(T0 + timedelta(seconds=2), pieces=32))
    c.handle(PieceSettled("s", 4, True, T0 + timedelta(seconds=3), ((PEER, PID, 65536),)))
    grades = [o.grade for o in rows if o.target_id == 1]
    assert grades == [Grade.LISTED, Grade.HANDSHAKE, Grade.ADVERTISED, Grade.VERIFIED]
    last = rows[-1]
    assert (last.pieces_verified, last.bytes_verified, last.source) == (1, 65536, Source.TRACKER)
    assert (last.peer_id, last.client, last.our_ip) == (PID, "libtorrent/2.1.1.0", "127.0.0.2")


def test_a_piece_settled_before_any_snapshot_still_records_the_handshake() -> None:
    c, rows = collector()
    c.handle(PieceSettled("s", 4, True, T0, ((PEER, PID, 65536),)))  # a .torrent target: no sample yet
    assert [(o.grade, o.peer_id) for o in rows if o.target_id == 1] == [(Grade.HANDSHAKE, PID), (Grade.VERIFIED, PID)]


def test_refreshes_do_not_flood_but_presence_is_recorded_again() -> None:
    c, rows = collector()
    for minute in range(0, 60):
        c.handle(snap(T0 + timedelta(minutes=minute)))
    # first sighting, then one row per 15 minutes of continued presence (per target)
    assert len([o for o in rows if o.target_id == 1]) == 4


def test_advertised_changes_are_recorded_at_most_once_per_gap() -> None:
    c, rows = collector()
    for second in range(0, 120, 10):
        c.handle(snap(T0 + timedelta(seconds=second), pieces=second // 10 + 1))
    assert [o.pieces_advertised for o in rows if o.target_id == 1] == [1, 7]


def test_handshake_learned_from_a_closed_connection() -> None:
    c, rows = collector()
    c.handle(PeerGone("s", PEER, T0, PID, connect_failed=False))
    assert [(o.grade, o.peer_id, o.source) for o in rows if o.target_id == 1] == [
        (Grade.HANDSHAKE, PID, Source.INCOMING)]


def test_failed_piece_blames_only_a_sole_sender() -> None:
    c, rows = collector()
    liar, honest = ("127.0.0.50", 7000), PEER
    c.handle(PieceSettled("s", 1, False, T0, ((liar, None, 16384), (honest, PID, 49152))))
    assert rows == []
    c.handle(PieceSettled("s", 2, False, T0, ((liar, None, 65536),)))
    assert {(o.ip, o.grade) for o in rows} == {("127.0.0.50", Grade.CORRUPT)}


def test_unknown_swarm_and_removed_targets_emit_nothing() -> None:
    c, rows = collector()
    c.handle(snap(T0).__class__("other", PEER, T0, True, False, 1, PID, None, 1, 32, None))
    c.set_targets("s", [])
    c.handle(snap(T0))
    assert rows == []
    assert c.peers == {}


def test_idle_peers_are_forgotten() -> None:
    c, _ = collector()
    c.handle(snap(T0))
    c.handle(snap(T0 + timedelta(hours=1), peer=("127.0.0.12", 1)))
    assert c.evict_idle(T0 + timedelta(minutes=40)) == 1
    assert {s: list(p) for s, p in c.peers.items()} == {"s": [("127.0.0.12", 1)]}
