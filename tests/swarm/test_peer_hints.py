"""Magnet peer hints (BEP 9 `x.pe`, issue 12 item 7): a magnet with nothing but `xt=` and `x.pe=`, no tracker
and no DHT, registered into a running daemon: the hinted libtorrent seeder gives us the metadata and is
verified, recorded with source 'magnet'. A hint naming a host is ignored, never resolved."""

from __future__ import annotations

from tests.conftest import SettingsFactory
from tests.helpers import wait_for_async
from tests.swarm.wire_peers import start_seeder
from tracker_watch.daemon import Daemon
from tracker_watch.domain.targets import parse_target
from tracker_watch.ledger.targets import TargetStore

# this module's addresses (other tests use .11-.77, .100-.120, .150-.170, .181-.188, .211-.216)
SEEDER_IP = "127.0.0.221"


async def test_a_magnet_with_only_a_peer_hint_gets_that_seeder_verified(make_settings: SettingsFactory) -> None:
    seeder = await start_seeder(SEEDER_IP, "disabled")
    assert seeder.content.v1 is not None
    daemon = Daemon(make_settings(swarm={"dht_enabled": False}))
    await daemon.start()
    try:
        spec = parse_target(f"magnet:?xt=urn:btih:{seeder.content.v1.hex()}&x.pe={SEEDER_IP}:{seeder.port}"
                            "&x.pe=seeder.invalid:6881")
        assert spec.trackers == ()
        assert spec.ignored_peer_hints == 1
        row, _ = await TargetStore(daemon.db.pool).register(spec, "Studio", "Film", actor="test")
        assert row.peer_hints == (f"{SEEDER_IP}:{seeder.port}",)

        async def verified() -> bool:
            rows = await daemon.db.pool.fetch(
                "SELECT source FROM observations WHERE host(ip) = $1 AND grade = 'verified'", SEEDER_IP)
            return bool(rows) and {r["source"] for r in rows} == {"magnet"}

        await wait_for_async(verified, timeout=60)
        assert daemon.engine is not None
        assert daemon.engine.uploaded_payload_bytes() == 0
    finally:
        await daemon.stop()
        seeder.stop()
