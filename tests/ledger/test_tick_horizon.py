"""Ticks read only what can change a plan (policy.horizon) and digests come from PostgreSQL: by property over
random incident streams, ticked in random batches with voids between, the real ledger issues exactly the
strikes that planning each subject's whole history gives, and a rebuild finds every digest as the ticks
left it and changes nothing."""

from __future__ import annotations

import asyncio
import itertools
from datetime import timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import SettingsFactory
from tests.domain.test_policy_stability import POLICY, Ledger
from tests.ledger.test_strike_stability import T0, Bench, bench, open_bench  # noqa: F401  (the fixture)
from tracker_watch.config import Settings
from tracker_watch.domain import policy as pol
from tracker_watch.domain.incidents import window_start
from tracker_watch.ledger import strikes

_counter = itertools.count(1)
# (address, work, day, ms): days over two years, so cycles restart and referrals cool down; a few days close
# together, where the min_gap horizon lies
DAYS = st.one_of(st.integers(0, 800), st.sampled_from([0, 6, 7, 8, 14, 15, 21, 370, 372, 373, 380]))
events = st.lists(st.one_of(
    st.tuples(st.just("see"), st.integers(0, 2), st.integers(0, 2), DAYS, st.integers(0, 2)),
    st.tuples(st.just("tick"), st.just(0), st.just(0), st.just(0), st.just(0)),
    st.tuples(st.just("void"), st.integers(0, 2), st.integers(0, 5), st.just(0), st.just(0))), min_size=1, max_size=24)


async def test_incidents_at_the_horizon_count_and_those_before_it_do_not(bench: Bench) -> None:  # noqa: F811
    """Each tick sees a subject's history only from its last strike's min_gap (a referral's cooldown) on."""
    days = [(0.0, [(1, 0)]), (3.0, []), (7.0, [(2, 7)]), (13.0, []), (14.0, [(3, 14)]), (379.0, []),
            (380.0, [(1, 380)])]
    expected: list[tuple[int, int]] = []
    for day, new in days:
        await bench.see(0, "10.0.0.5", T0 + timedelta(days=day))
        await bench.ledger.tick()
        expected += new
        assert await bench.rows("SELECT level, (issued_at::date - $1::date) FROM strikes WHERE status = 'active' "
                                "ORDER BY issued_at", T0) == expected
    assert (await bench.ledger.rebuild()).subjects == 0


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events)
def test_property_ticks_issue_what_whole_histories_give(
        make_settings: SettingsFactory, tmp_path: Path, stream: list[tuple[str, int, int, int, int]]) -> None:
    asyncio.run(_scenario(make_settings(policy={"test_country": "KZ", "jurisdictions": ["KZ"]}), tmp_path, stream))


async def _scenario(settings_: Settings, tmp_path: Path, stream: list[tuple[str, int, int, int, int]]) -> None:
    n = next(_counter)
    ips = [f"10.3.{n % 250}.{k + 1}" for k in range(3)]  # bare addresses of their own per example
    b = await open_bench(settings_, tmp_path / "drop", f"10.4.{n % 250}.1", f"SUB-{n}")
    assert strikes.strike_policy(settings_) == POLICY
    window_s = settings_.evidence.incident_window_s
    models = [Ledger() for _ in ips]  # the old way, in memory: each subject's whole history planned every time
    pending: list[list[pol.Incident]] = [[] for _ in ips]  # seen, not yet ticked (a void sees only what was)
    try:
        for kind, who, work, day, ms in [*stream, ("tick", 0, 0, 0, 0)]:
            model = models[who]
            if kind == "see":
                at = T0 + timedelta(days=day, milliseconds=ms)
                await b.see(work, ips[who], at)
                ws = window_start(at, window_s)
                pending[who].append(pol.Incident(f"{b.targets[work][0]}/{ws.isoformat()}", at, ws))
            elif kind == "tick":
                await b.ledger.tick()
                for m, seen in zip(models, pending, strict=True):
                    for i in seen:
                        old = m.incidents.get(i.key)
                        m.incidents[i.key] = pol.Incident(i.key, min(i.at, old.at) if old else i.at, i.window)
                    seen.clear()
                    m.evaluate()
                assert await _active(b, ips) == [sorted(_strikes(m)) for m in models]
            else:
                mine = sorted(model.active, key=lambda s: (s.issued_at, s.incident))
                if mine:
                    s = mine[work % len(mine)]
                    sid = await b.db.pool.fetchval(
                        "SELECT s.id FROM strikes s JOIN subjects u ON u.id = s.subject_id WHERE host(u.ip) = $1 "
                        "AND s.status = 'active' AND s.issued_at = $2 AND s.level = $3", ips[who], s.issued_at, s.level)
                    assert await b.ledger.void(sid, "cli:prop", "disputed") is not None
                    model.void(s)
                    assert await _active(b, ips) == [sorted(_strikes(m)) for m in models]
        live = await b.rows("SELECT id, level, status, cycle_start, issued_at FROM strikes ORDER BY id")
        report = await b.ledger.rebuild()
        assert report.subjects == 0  # the tick's digests are the rebuild's, subject by subject
        full = await b.ledger.rebuild(full=True)
        assert (report.created, report.superseded, full.created, full.superseded) == (0, 0, 0, 0)
        assert await b.rows("SELECT id, level, status, cycle_start, issued_at FROM strikes ORDER BY id") == live
    finally:
        await b.outbox.close()
        await b.db.stop()


def _strikes(m: Ledger) -> list[tuple[int, object, object]]:
    return [(s.level, s.cycle_start, s.issued_at) for s in m.active]


async def _active(b: object, ips: list[str]) -> list[list[tuple[int, object, object]]]:
    rows = await b.db.pool.fetch(  # type: ignore[attr-defined]
        "SELECT host(u.ip) AS ip, s.level, s.cycle_start, s.issued_at FROM strikes s JOIN subjects u "
        "ON u.id = s.subject_id WHERE s.status = 'active'")
    return [sorted((r["level"], r["cycle_start"], r["issued_at"]) for r in rows if r["ip"] == ip) for ip in ips]
