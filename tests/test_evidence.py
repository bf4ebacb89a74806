"""Evidence that stands up, end to end: full seeders, a partial seeder, a decoy and a liar on loopback."""

from __future__ import annotations

import io
import json
import sys
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import SettingsFactory
from tests.helpers import run_process, wait_for_async
from tracker_watch.daemon import Daemon
from tracker_watch.demo.liar import LIAR_IP
from tracker_watch.demo.swarm import DECOY_IP, LocalSwarm
from tracker_watch.domain.targets import parse_target
from tracker_watch.ledger import package, signing
from tracker_watch.ledger.targets import TargetStore

PARTIAL = 2  # index of the partial seeder (≈ 30 % of the pieces)


@pytest.fixture
async def mixed_swarm() -> AsyncIterator[LocalSwarm]:
    """A swarm of each test's own: on a module's swarm the tracker went on listing the previous test's stopped
    monitor (its session and its verifier's listener, for the tracker's peer TTL) and its seeders named it by
    PEX, so the next monitor dialled two addresses that never answer and wanted pieces for them."""
    swarm = await LocalSwarm(seeders=3, partial={PARTIAL: 0.3}, decoy=True, liar=True).start()
    yield swarm
    await swarm.stop()


async def grades(d: Daemon) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for r in await d.db.pool.fetch("SELECT DISTINCT host(ip) AS ip, grade FROM observations WHERE ip IS NOT NULL"):
        out.setdefault(r["ip"], set()).add(r["grade"])
    return out


def payload_bytes(root: Path) -> int:
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file())


@pytest.mark.parametrize("method", ["probe", "session"])
async def test_each_kind_of_peer_gets_the_grade_it_earned(make_settings: SettingsFactory, mixed_swarm: LocalSwarm,
                                                           tmp_path: Path, method: str) -> None:
    # libtorrent, not the planner, picks who serves a wanted piece: when honest seeders serve the pieces
    # wanted for the liar, that costs the liar's IP an attempt. On a loaded machine three attempts can all go
    # that way and the liar is never asked (harmless: it is never accused either); ten keep the test honest.
    daemon = Daemon(make_settings(verify={"max_attempts_per_peer": 10, "redial_s": 5.0, "method": method}))
    await daemon.start()
    try:
        row, _ = await TargetStore(daemon.db.pool).register(
            parse_target(mixed_swarm.content.magnet([mixed_swarm.tracker.url])), "Studio", "Film", actor="test")
        full = [p.ip for i, p in enumerate(mixed_swarm.peers) if i != PARTIAL]
        partial_ip = mixed_swarm.peers[PARTIAL].ip

        async def settled() -> bool:
            g = await grades(daemon)
            return (all("verified" in g.get(ip, set()) for ip in [*full, partial_ip])
                    and "corrupt" in g.get(LIAR_IP, set()) and DECOY_IP in g)

        try:
            await wait_for_async(settled, timeout=120)
        except TimeoutError:
            swarm = next(iter(daemon.engine.swarms.values()))  # type: ignore[union-attr]
            liar = mixed_swarm.liar_peer
            pytest.fail(f"grades never settled: {await grades(daemon)}; liar sent {liar and liar.blocks_sent} blocks "
                        f"over {liar and liar.connections} connections; record "
                        f"{swarm.pieces and swarm.pieces.record}; planner {swarm.planner}")
        g = await grades(daemon)
        assert g[DECOY_IP] == {"listed"}
        assert "verified" not in g[LIAR_IP]
        assert mixed_swarm.liar_peer is not None
        assert mixed_swarm.liar_peer.blocks_sent > 0  # it was asked, and it lied
        # the partial seeder is verified only for pieces it really has
        have = mixed_swarm.partial_pieces(PARTIAL)
        pieces = {r["piece_index"] for r in await daemon.db.pool.fetch(
            "SELECT piece_index FROM observations WHERE host(ip) = $1 AND grade = 'verified'", partial_ip)}
        assert pieces
        assert pieces <= have
        # every verified row carries the piece's hashes, and the SHA-1 is the torrent's
        info = parse_target(mixed_swarm.content.torrent).info
        assert info is not None
        from tracker_watch.domain.targets import v1_piece_hashes

        hashes = v1_piece_hashes(info)
        assert hashes is not None
        for r in await daemon.db.pool.fetch("SELECT * FROM observations WHERE grade = 'verified'"):
            i = r["piece_index"]
            assert r["piece_sha1"] == hashes[i * 20:i * 20 + 20]
            assert len(r["piece_sha256"]) == 32
            assert r["piece_bytes"] > 0
        # incidents: one per IP, best grade, ports, pieces
        incidents = {str(r["ip"]): r for r in await daemon.db.pool.fetch(
            "SELECT * FROM incidents WHERE target_id = $1", row.id)}
        assert incidents[DECOY_IP]["best_grade"] == "listed"
        assert incidents[LIAR_IP]["corrupt"]
        assert incidents[LIAR_IP]["best_grade"] != "verified"
        for ip in full:
            assert incidents[ip]["best_grade"] == "verified"
            assert incidents[ip]["pieces_verified"]
            assert incidents[ip]["bytes_verified"] > 0
        # nothing uploaded; and once nothing is wanted any more, no payload remains
        assert daemon.engine is not None
        assert daemon.engine.uploaded_payload_bytes() == 0
        try:
            await wait_for_async(lambda: _no_payload(daemon), timeout=60)
        except TimeoutError:
            sw = next(iter(daemon.engine.swarms.values()))
            kept = payload_bytes(daemon.engine.payload_dir)
            pytest.fail(f"payload kept: recycled {daemon.engine.recycled}, bytes {kept}, planner {sw.planner}")
        # the monitor never takes itself for a peer (the tracker may still list an earlier test's monitor there)
        own = await daemon.db.pool.fetch("SELECT * FROM observations WHERE host(ip) = '127.0.0.2' AND "
                                         "(grade <> 'listed' OR port = $1)", daemon.engine.listen_port())
        assert not own, [(r["grade"], r["source"], r["port"], r["our_ip"], r["client"]) for r in own]
        # the evidence package for one seeder checks out with its own verify.py, and catches an edit
        await daemon.batcher.stop(timeout=5)  # type: ignore[union-attr]
        await daemon.writer.checkpoint()  # type: ignore[union-attr]
        async with daemon.db.pool.acquire() as conn:
            data = await package.build(conn, package.Selection(row.id, full[0]))
        folder = tmp_path / "pkg"
        zipfile.ZipFile(io.BytesIO(data)).extractall(folder)
        fingerprint = signing.fingerprint(signing.public_raw(daemon.writer.key))  # type: ignore[union-attr]
        code, out = await run_process(sys.executable, "-I", "-S", str(folder / "verify.py"), "--key", fingerprint,
                                      str(folder))
        assert code == 0, out
        assert "OK: the package is consistent with its signed chain rows" in out
        pieces = json.loads((folder / "verified_pieces.json").read_text())
        assert pieces
        assert all(p["sha1"] == p["expected_sha1"] for p in pieces)
        observations = json.loads((folder / "observations.json").read_text())
        assert {o["ip"] for o in observations} == {full[0]}
        segment = json.loads((folder / "chain.json").read_text())["nodes"]["demo"]["rows"]
        others = [r for r in segment if r["fields"] is None]
        assert others  # rows of other peers are in the segment as hashes only
        chain_rows = json.loads((folder / "chain.json").read_text())
        first = next(r for r in chain_rows["nodes"]["demo"]["rows"] if r["fields"] is not None)
        first["fields"]["port"] += 1
        (folder / "chain.json").write_text(json.dumps(chain_rows))
        code, out = await run_process(sys.executable, str(folder / "verify.py"), str(folder))
        assert code == 1
        assert "chain.json: SHA-256 differs" in out
        assert "fields do not match the content hash" in out
    finally:
        await daemon.stop()


async def _no_payload(d: Daemon) -> bool:
    assert d.engine is not None
    if d.engine.verifier is not None:  # probe mode: the session never wanted a piece, nothing was ever written
        return payload_bytes(d.engine.payload_dir) == 0 and d.engine.counters.get("net.recv_payload_bytes") == 0
    return d.engine.recycled > 0 and payload_bytes(d.engine.payload_dir) == 0 and \
        all(s.planner is not None and not s.planner.have for s in d.engine.swarms.values())


