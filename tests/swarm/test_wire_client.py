"""probe() and verify_accepted() against real libtorrent seeders (plaintext and MSE forced), the demo's
liar, a closed port, and scripted hostile peers. All on 127.0.0.100-120."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import struct
from collections.abc import AsyncIterator

import libtorrent as lt
import pytest

from tests.swarm.wire_peers import FAST, PEER_ID, PROBE_IP, FakePeer, LtSeeder, start_seeder
from tracker_watch.demo.liar import Liar
from tracker_watch.domain import peerwire as pw
from tracker_watch.swarm.wire import PieceSpec, ProbeResult, Reason, Timeouts, probe, verify_accepted


@pytest.fixture
async def plain_seeder() -> AsyncIterator[LtSeeder]:
    seeder = await start_seeder("127.0.0.101", "disabled")
    yield seeder
    seeder.stop()


@pytest.fixture
async def forced_seeder() -> AsyncIterator[LtSeeder]:
    seeder = await start_seeder("127.0.0.102", "forced")
    yield seeder
    seeder.stop()


def assert_verified(r: ProbeResult, seeder: LtSeeder, index: int) -> None:
    assert (r.verified, r.reason) == (True, None), r.detail
    assert r.handshake_ok
    assert r.client is not None
    assert r.client.startswith("libtorrent/")
    assert r.peer_id is not None
    assert r.pieces_advertised == seeder.content.num_pieces
    assert r.payload_bytes == seeder.ti.piece_size(index)
    assert r.local is not None
    assert (r.local[0], r.yourip, r.fast) == (PROBE_IP, PROBE_IP, True)


@pytest.mark.parametrize("index", [0, 3])  # a whole piece of 4 blocks, and the short last piece
async def test_plaintext_probe_verifies_a_piece_from_libtorrent(plain_seeder: LtSeeder, index: int) -> None:
    r = await plain_seeder.probe(index, encryption="plaintext")
    assert_verified(r, plain_seeder, index)
    assert (r.mse, r.encrypted) == (False, False)


async def test_mse_probe_verifies_a_piece_from_a_seeder_that_forces_encryption(forced_seeder: LtSeeder) -> None:
    r = await forced_seeder.probe(0, encryption="require")
    assert_verified(r, forced_seeder, 0)
    assert (r.mse, r.encrypted, r.attempts) == (True, True, ["rc4: verified"])


async def test_prefer_falls_back_to_plaintext_when_the_peer_has_no_mse(plain_seeder: LtSeeder) -> None:
    r = await plain_seeder.probe(1, encryption="prefer")
    assert_verified(r, plain_seeder, 1)
    assert r.attempts == ["mse: encryption_failed", "plain: verified"]


async def test_prefer_uses_mse_when_the_peer_requires_it(forced_seeder: LtSeeder) -> None:
    r = await forced_seeder.probe(2, encryption="prefer")
    assert_verified(r, forced_seeder, 2)
    assert (r.encrypted, r.attempts) == (True, ["mse: verified"])


async def test_plaintext_to_an_encryption_only_seeder_is_refused(forced_seeder: LtSeeder) -> None:
    r = await forced_seeder.probe(0, encryption="plaintext")
    assert (r.verified, r.reason, r.handshake_ok) == (None, Reason.HANDSHAKE_REFUSED, False)
    assert "encryption" in r.detail


async def test_require_to_a_plaintext_only_seeder_fails_encryption(plain_seeder: LtSeeder) -> None:
    r = await plain_seeder.probe(0, encryption="require")
    assert (r.verified, r.reason, r.connected, r.mse) == (None, Reason.ENCRYPTION_FAILED, True, False)


async def test_unknown_infohash_is_not_verified(plain_seeder: LtSeeder) -> None:
    r = await plain_seeder.probe(0, encryption="plaintext", info_hash=b"\x42" * 20)
    assert (r.verified, r.reason) == (None, Reason.HANDSHAKE_REFUSED)


async def test_liar_gives_hash_mismatch() -> None:
    pieces = [os.urandom(40000), os.urandom(40000)]
    fake = FakePeer("127.0.0.119", pieces)  # only to compute the spec; the liar serves the bytes
    liar = await Liar(2, [fake.info_hash], "http://127.0.0.120:9/announce", ip="127.0.0.119").start()
    try:
        size, digest = fake.spec(0)
        r = await probe(liar.ip, liar.port, fake.info_hash, PEER_ID, 0, size, digest, num_pieces=2,
                        local_ip=PROBE_IP, encryption="prefer", timeouts=FAST)
    finally:
        await liar.stop()
    assert (r.verified, r.reason, r.payload_bytes) == (False, Reason.HASH_MISMATCH, size)
    assert r.attempts == ["mse: encryption_failed", "plain: hash_mismatch"]
    assert r.client is None  # the liar speaks no BEP 10


async def test_closed_port_is_refused() -> None:
    with socket.socket() as s:  # a port that was free a moment ago and has no listener now
        s.bind(("127.0.0.120", 0))
        port = s.getsockname()[1]
    fake = FakePeer("127.0.0.120", [b"x"])
    fake.port = port
    r = await fake.probe(encryption="prefer")
    assert (r.connected, r.verified, r.reason) == (False, None, Reason.REFUSED)
    assert r.attempts == ["mse: refused"]
    assert f":{port} refused" in r.detail


@pytest.mark.parametrize("policy", ["disabled", "forced"])
async def test_incoming_connection_from_libtorrent_is_verified(policy: str) -> None:
    seeder = await start_seeder("127.0.0.103" if policy == "disabled" else "127.0.0.104", policy)
    size, digest = seeder.piece(1)
    assert seeder.content.v1 is not None
    spec = PieceSpec(seeder.content.v1, seeder.content.num_pieces, 1, size, digest)
    done: asyncio.Future[ProbeResult] = asyncio.get_running_loop().create_future()

    async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not done.done():
            done.set_result(await verify_accepted(reader, writer, spec, PEER_ID, timeouts=FAST))

    server = await asyncio.start_server(accepted, PROBE_IP, 0)
    try:
        seeder.handle.connect_peer((PROBE_IP, server.sockets[0].getsockname()[1]))
        r = await asyncio.wait_for(done, 60)
    finally:
        server.close()
        seeder.stop()
    assert_verified(r, seeder, 1)
    assert (r.mse, r.encrypted) == (policy == "forced", policy == "forced")
    assert r.ip == seeder.ip


async def test_partial_libtorrent_seeder_verified_on_a_piece_it_has() -> None:
    seeder = await start_seeder("127.0.0.105", "disabled", only={2})
    try:
        alternatives = [(i, *seeder.piece(i)) for i in (1, 2, 3)]
        r = await seeder.probe(0, encryption="plaintext", alternatives=alternatives)
    finally:
        seeder.stop()
    assert (r.verified, r.piece_index, r.pieces_advertised) == (True, 2, 1), r.detail


async def test_incoming_plaintext_refused_when_we_require_encryption() -> None:
    spec = PieceSpec(b"\x11" * 20, 3, 0, 100, b"\x00" * 20)
    done: asyncio.Future[ProbeResult] = asyncio.get_running_loop().create_future()

    async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        done.set_result(await verify_accepted(reader, writer, spec, PEER_ID, allow_plaintext=False, timeouts=FAST))

    server = await asyncio.start_server(accepted, PROBE_IP, 0)
    try:
        _, writer = await asyncio.open_connection(PROBE_IP, server.sockets[0].getsockname()[1],
                                                  local_addr=("127.0.0.112", 0))
        writer.write(pw.encode_handshake(spec.info_hash, b"-XX0001-" + bytes(12)))
        r = await asyncio.wait_for(done, 30)
        writer.close()
    finally:
        server.close()
    assert (r.reason, r.ip, r.handshake_ok) == (Reason.ENCRYPTION_REQUIRED, "127.0.0.112", False)


# --- hostile and odd peers (scripted) ---------------------------------------------------------------

PIECES = [os.urandom(3 * pw.BLOCK + 100), os.urandom(3 * pw.BLOCK + 100), os.urandom(777)]


async def run_fake(**kw: object) -> tuple[ProbeResult, FakePeer]:
    probe_kw = {k: kw.pop(k) for k in ("index", "timeouts", "max_bytes", "encryption", "alternatives") if k in kw}
    fake = await FakePeer("127.0.0.111", PIECES, **kw).start()  # type: ignore[arg-type]
    try:
        return await fake.probe(**probe_kw), fake  # type: ignore[arg-type]
    finally:
        await fake.stop()


@pytest.mark.parametrize("have", ["all", "bitfield"])
@pytest.mark.parametrize("fast", [True, False])
async def test_fake_honest_peer_verified_and_we_never_upload(have: str, fast: bool) -> None:
    r, fake = await run_fake(have=have, fast=fast, ask_us=True)
    assert (r.verified, r.reason, r.client, r.pieces_advertised) == (True, None, "FakePeer/1.0", 3)
    assert fake.received is not None
    kinds = [m.kind for m in fake.received]
    assert pw.PIECE not in kinds
    assert pw.UNCHOKE not in kinds
    assert kinds[0] == (pw.HAVE_NONE if fast else pw.BITFIELD)
    if not fast:
        assert fake.received[0].data == bytes(1)  # an empty bitfield
    assert (pw.REJECT in kinds) == fast  # its request for our (non-existent) data is rejected under BEP 6
    requested = [m for m in fake.received if m.kind == pw.REQUEST]
    assert sorted((m.begin, m.length) for m in requested) == [(0, pw.BLOCK), (pw.BLOCK, pw.BLOCK),
                                                              (2 * pw.BLOCK, pw.BLOCK), (3 * pw.BLOCK, 100)]


async def test_a_partial_seeder_is_verified_on_an_alternative_piece_it_has() -> None:
    fake = FakePeer("127.0.0.111", PIECES)
    size1, hash1 = fake.spec(1)
    size2, hash2 = fake.spec(2)
    r, sent = await run_fake(have="missing", alternatives=[(1, size1, hash1), (2, size2, hash2)])
    assert (r.verified, r.piece_index, r.payload_bytes) == (True, 1, size1)
    assert sent.received is not None
    assert {m.index for m in sent.received if m.kind == pw.REQUEST} == {1}  # only the one piece
    quick = Timeouts(connect=5, handshake=5, have=0.3, unchoke=5, piece=5, idle=5, total=30)
    r, _ = await run_fake(have="missing", alternatives=[(0, *fake.spec(0))], timeouts=quick)
    assert (r.verified, r.reason, r.piece_index) == (None, Reason.NO_SUCH_PIECE, 0)


async def test_ipv6_loopback() -> None:
    fake = await FakePeer("::1", PIECES).start()
    try:
        size, digest = fake.spec(2)
        r = await probe("::1", fake.port, fake.info_hash, PEER_ID, 2, size, digest, num_pieces=3, local_ip="::1",
                        encryption="plaintext", timeouts=FAST)
    finally:
        await fake.stop()
    assert (r.verified, r.ip) == (True, "::1")
    assert r.local is not None
    assert r.local[0] == "::1"


async def test_allowed_fast_piece_verified_while_choked() -> None:
    r, _ = await run_fake(unchoke=False, allowed_fast=True)
    assert (r.verified, r.unchoked) == (True, False)


@pytest.mark.parametrize(("kw", "reason"), [
    ({"have": "none"}, Reason.NO_SUCH_PIECE),
    ({"have": "missing"}, Reason.NO_SUCH_PIECE),
    ({"unchoke": False}, Reason.CHOKED),
    ({"reject_all": True}, Reason.REJECTED),
    ({"answer_hash": b"\x22" * 20}, Reason.WRONG_INFOHASH),
    ({"after_handshake": b"garbage!" * 10}, Reason.PROTOCOL),
    ({"after_handshake": struct.pack(">I", 2**31)}, Reason.PROTOCOL),
    ({"after_handshake": struct.pack(">IBI", 5, pw.HAVE, 99)}, Reason.PROTOCOL),
    ({"after_handshake": bytes(4) * 100_000, "max_bytes": 50_000}, Reason.TOO_MUCH_DATA),
    ({"encryption": "require"}, Reason.ENCRYPTION_FAILED),
])
async def test_misbehaving_peers_get_a_clear_reason(kw: dict[str, object], reason: Reason) -> None:
    quick = Timeouts(connect=5, handshake=5, have=0.5, unchoke=0.5, piece=5, idle=5, total=30)
    r, _ = await run_fake(timeouts=quick, **kw)
    assert (r.verified, r.reason) == (None, reason), r.detail
    assert r.bytes_received <= 50_001


async def test_slowloris_peer_ends_at_the_deadline() -> None:
    slow = Timeouts(connect=5, handshake=5, have=60, unchoke=60, piece=60, idle=60, total=1)
    r, _ = await run_fake(dribble=0.01, timeouts=slow)
    assert (r.verified, r.reason, r.handshake_ok) == (None, Reason.TIMEOUT, True)


async def test_silent_peer_hits_the_idle_timeout() -> None:
    silent = Timeouts(connect=5, handshake=5, have=60, unchoke=60, piece=60, idle=0.3, total=60)
    r, _ = await run_fake(dribble=3600, timeouts=silent)
    assert (r.reason, r.detail) == (Reason.TIMEOUT, "availability: peer silent for 0.3 s")


def test_bad_piece_spec_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="out of range"):
        PieceSpec(b"i" * 20, 3, 3, 10, b"h" * 20)
    assert lt.version.startswith("2.")


async def test_random_frames_from_a_peer_end_with_a_reason_never_an_exception() -> None:
    """Well-framed nonsense (random ids, random payloads) and raw noise, in many seeds."""
    quick = Timeouts(connect=5, handshake=5, have=0.3, unchoke=0.3, piece=2, idle=2, total=10)
    reasons = set()
    for seed in range(25):
        rng = random.Random(seed)
        frames = b"".join(random_frame(rng) for _ in range(rng.randint(1, 6)))
        noise = frames if seed % 2 else rng.randbytes(rng.randint(1, 200))
        r, _ = await run_fake(after_handshake=noise, have=rng.choice(["all", "none", "bitfield"]), timeouts=quick)
        assert r.verified in (True, None)
        reasons.add(r.reason)
    assert Reason.PROTOCOL in reasons, reasons
    assert len(reasons) > 1, reasons  # some nonsense is well-formed enough to reach a later phase


def random_frame(rng: random.Random) -> bytes:
    """Mostly well-formed messages with random contents, sometimes a wrong size."""
    kind = rng.choice([*range(0, 21), 99])
    size = {0: 0, 1: 0, 2: 0, 3: 0, 14: 0, 15: 0, 4: 4, 13: 4, 17: 4, 6: 12, 8: 12, 16: 12, 9: 2, 5: 1}.get(kind, 30)
    if rng.random() < 0.2:
        size = rng.randint(0, 40)
    body = bytearray(rng.randbytes(size))
    if size >= 4 and kind != 20:
        body[:4] = struct.pack(">I", rng.randint(0, 3))  # a piece index, sometimes out of range
    return struct.pack(">IB", 1 + size, kind) + bytes(body)
