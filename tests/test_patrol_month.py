"""A month of the three-checks regime, simulated in seconds: which obligations were met."""

from __future__ import annotations

import csv
import io
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gateway.patrols.desk import PatrolDesk
from gateway.patrols.reports import month_report, obligations_csv
from gateway.storage.store import GatewayStore
from parkguard.clock import ManualClock
from parkguard.core.patrol import load_patrol_config, simulate_tap
from wire.contract.messages import PatrolTap

CONFIG = load_patrol_config(Path(__file__).resolve().parents[1] / "docs/examples/patrols.toml")
START = datetime(2026, 4, 30, 16, 0, tzinfo=UTC)  # 1 May 00:00 in Shanghai
FULL = {"present": "ok", "pressure_or_hose_ok": "ok", "seal_intact": "ok",
        "lens_clean": "ok", "signs_clean": "ok", "floor_clean": "ok", "walls_clean": "ok",
        "no_cobwebs": "ok"}


def test_a_month_of_the_three_checks(tmp_path: Path) -> None:
    began = time.perf_counter()
    clock = ManualClock(START)
    store = GatewayStore.open(tmp_path / "gateway.db")
    desk = PatrolDesk(store.db, config=CONFIG, clock=clock)
    counters = {c.id: 0 for c in CONFIG.checkpoints}
    seq = {"r1": 0}

    plan: list[tuple[datetime, str, str, dict[str, str] | None]] = []

    def walk(day: int, hour: float, badge: str, route: str, gap_min: float = 3,
             answers: dict[str, str] | None = None, person_offset: float = 0) -> None:
        for i, point_id in enumerate(CONFIG.route[route].checkpoints):
            at = START + timedelta(days=day, hours=hour, minutes=i * gap_min + person_offset)
            plan.append((at, badge, point_id, answers))

    def tap_all() -> None:
        for at, badge, point_id, answers in sorted(plan, key=lambda p: (p[0], p[1])):
            point = CONFIG.checkpoint[point_id]
            counters[point_id] += 1  # the tag counts its reads in time order
            seq["r1"] += 1
            assert point.key is not None
            tap = PatrolTap(reader="r1", seq=seq["r1"], tag_id=point.tag, badge=badge,
                            sun=simulate_tap(bytes.fromhex(point.key.get_secret_value()), point.tag,
                                             counters[point_id]),
                            reader_time=at.astimezone(CONFIG.zone).replace(tzinfo=None))
            outcome = desk.ingest(tap, at + timedelta(seconds=5), answers=answers)
            assert outcome.status == "accepted", outcome

    for day in range(31):
        for badge, hour in (("G003", 1), ("G001", 9), ("G002", 17)):  # shifts c, a, b
            if not (badge == "G002" and day == 12):  # li misses one shift
                route = CONFIG.by_badge[badge].route
                assert route is not None
                walk(day, hour, badge, route)
        walk(day, 10, "S001", "full", gap_min=5)
        if day % 7 != 3:  # once only on four Mondays (4, 11, 18, 25 May)
            walk(day, 14, "S001", "full", gap_min=5)
        if day not in (4, 20):
            walk(day, 11, "C001", "spot", gap_min=4)
        walk(day, 12, "G001", "booth-floor", answers=FULL)
        if day % 7 == 0:
            walk(day, 12.5, "G001", "lenses-signs", answers=FULL)
    walk(9, 13, "G001", "booth-walls", answers=FULL)
    walk(14, 13, "S001", "fire-equipment", gap_min=10, answers=FULL)
    for day in (5, 18):  # captain and manager together, only twice
        walk(day, 15, "C001", "joint", gap_min=6)
        walk(day, 15, "M001", "joint", gap_min=6, person_offset=2)

    tap_all()
    clock.set(START + timedelta(days=31, minutes=1))
    report = month_report(desk, 2026, 5)
    results: dict[tuple[str, str], list[str]] = {}
    for r in report.obligations:
        results.setdefault((r.obligation, r.subject), []).append(r.status)

    def unmet(obligation: str, subject: str) -> int:
        return sum(s != "met" for s in results[(obligation, subject)])

    assert len(results[("guard-round", "li")]) == 31
    assert unmet("guard-round", "li") == 1 and unmet("guard-round", "wang") == 0
    assert unmet("squad-patrol", "chen") == 4
    assert unmet("captain-spot", "zhou") == 2
    assert results[("joint-inspection", "captain+manager")] == ["missed"]
    joint = next(r for r in report.obligations if r.obligation == "joint-inspection")
    assert (joint.counted, joint.required) == (2, 3)
    assert results[("booth-floor", "cleaner+guard+squad_leader")] == ["met"] * 31
    assert results[("booth-walls", "cleaner+guard+squad_leader")] == ["met"]
    assert results[("fire-equipment", "guard+squad_leader+captain")] == ["met"]
    assert set(results[("lenses-signs", "cleaner+guard+squad_leader")]) == {"met"}
    rows = list(csv.DictReader(io.StringIO(obligations_csv(report))))
    assert len(rows) == len(report.obligations)
    assert time.perf_counter() - began < 30
    store.close()

