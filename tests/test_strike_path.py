"""The whole regime on a local swarm: verified evidence → strike 1 → notice delivered to the ISP's webhook."""

from __future__ import annotations

import pytest

from tests.conftest import Receiver, SettingsFactory
from tests.domain.test_notices import validate
from tests.helpers import wait_for_async
from tracker_watch.daemon import Daemon
from tracker_watch.demo.swarm import DECOY_IP, LocalSwarm
from tracker_watch.domain.leases import parse
from tracker_watch.domain.targets import parse_target
from tracker_watch.ledger.leases import import_leases
from tracker_watch.ledger.targets import TargetStore


async def test_seeders_get_strike_one_and_their_isp_the_notice(make_settings: SettingsFactory,
                                                                local_swarm: LocalSwarm, receiver: Receiver) -> None:
    url, got, _ = receiver
    settings = make_settings(policy={"test_country": "KZ", "evaluate_interval_s": 0.5},
                             notices={"delivery_interval_s": 0.5})
    daemon = Daemon(settings)
    await daemon.start()
    try:
        ips = [p.ip for p in local_swarm.peers]
        async with daemon.db.pool.acquire() as conn:  # two seeders are Kaz Telecom subscribers, one is not
            await import_leases(conn, "Kaz Telecom", parse(
                "prefix,port_from,port_to,valid_from,valid_to,subscriber\n"
                f"{ips[0]},,,2026-01-01,,SUB-{ips[0]}\n{ips[1]},,,2026-01-01,,SUB-{ips[1]}\n"))
        await daemon.db.pool.execute("UPDATE isps SET webhook_url = $1, abuse_email = 'abuse@kaz.example'", url)
        await TargetStore(daemon.db.pool).register(parse_target(local_swarm.content.magnet([local_swarm.tracker.url])),
                                                   "Studio", "Film", actor="test")

        async def struck() -> bool:
            n = await daemon.db.pool.fetchval("SELECT count(*) FROM strikes WHERE status = 'active'")
            return n == 3 and len(got) == 2

        try:
            await wait_for_async(struck, timeout=90)
        except TimeoutError:
            graded = await daemon.db.pool.fetch("SELECT host(ip) AS ip, grade, count(*) FROM observations "
                                                "GROUP BY 1, 2 ORDER BY 1, 2")
            strikes = await daemon.db.pool.fetch("SELECT * FROM strikes")
            notices = await daemon.db.pool.fetch("SELECT state, last_error FROM notices")
            pytest.fail(f"no strikes for every seeder: {[tuple(r) for r in graded]} {strikes} {notices} {got}")
        rows = await daemon.db.pool.fetch(
            "SELECT s.level, sub.kind, sub.subscriber_ref, host(sub.ip) AS ip, n.state FROM strikes s "
            "JOIN subjects sub ON sub.id = s.subject_id JOIN notices n ON n.strike_id = s.id")
        assert {r["level"] for r in rows} == {1}
        assert sorted(r["subscriber_ref"] or r["ip"] for r in rows) == sorted(
            [f"SUB-{ips[0]}", f"SUB-{ips[1]}", ips[2]])
        assert sorted(r["state"] for r in rows) == ["delivered", "delivered", "held"]
        assert not [r for r in rows if r["ip"] == DECOY_IP]
        assert await daemon.db.pool.fetchval("SELECT count(*) FROM subjects WHERE host(ip) = $1", DECOY_IP) == 0
        for delivery in got:
            validate(delivery["body"])
            assert b"<Type>BitTorrent</Type>" in delivery["body"]
        held = await daemon.db.pool.fetchval("SELECT count(*) FROM incidents WHERE legal_hold")
        assert held == 3  # the evidence behind each strike is kept past retention
    finally:
        await daemon.stop()
