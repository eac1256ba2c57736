"""The demo's day as a scenario (``docs/examples/scenarios/demo.toml``, simulator/demo_day.py)
and what the engine gained for it: drivers without a plate at the kiosk, a flood that falls
from one level to the next, and the car-counting invariant when lanes read rendered frames.

The whole demo runs in tests/test_cli.py (``parkguard demo --cars 30``) and served in
tests/test_demo_served.py; here the pure parts, and a short no-plate scenario end to end on
the real locked-down Mosquitto with the real gateway and lane code.
"""

from __future__ import annotations

import sqlite3
from datetime import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from broker.provision.generate import ProvisionResult
from broker.runner import MosquittoBroker
from simulator.demo_day import DEMO_SCENARIO, DemoDay, demo_scenario
from simulator.scenario.invariants import Expected, Facts, check
from simulator.scenario.model import load_scenario
from simulator.scenario.plan import plan
from simulator.scenario.run import run_scenario

PLATE = "粤B12345"


@pytest.mark.parametrize("cars", [10, 30, 200])
def test_the_demo_plays_exactly_the_cars_asked_for_across_the_whole_day(cars: int) -> None:
    scenario = demo_scenario(DemoDay(workdir=Path("unused"), cars=cars, reader="ground_truth"))
    visits = plan(scenario).visits
    assert len(visits) == cars
    assert scenario.site.reader == "ground_truth"
    if cars >= 30:  # scaled, not capped: the evening still has its cars
        zone = ZoneInfo(scenario.site.timezone)
        assert any(v.arrive.astimezone(zone).time() >= time(17) for v in visits)


def test_the_demo_scenario_has_every_part_of_the_control_rooms_day() -> None:
    scenario = load_scenario(DEMO_SCENARIO)
    assert (scenario.site.entry_lanes, scenario.site.exit_lanes) == (2, 2)
    assert scenario.site.reader == "tflite"
    assert [(f.kind, f.minutes) for f in scenario.faults] == [("gateway_kill", 10)]
    assert sorted(w.kind for w in scenario.patrol) == ["late", "on_time"]
    assert [s.kind for s in scenario.sensors] == ["fire", "flood", "flood"]
    assert sorted(s.kind for s in scenario.staff) == ["accident", "drill", "handover"]
    first, second = scenario.sensors[1:]  # level 2 (300 mm and up), then falling to level 1
    assert first.water_mm >= 300 > second.water_mm >= 100
    assert _minutes(second.at) == _minutes(first.at) + first.minutes
    assert scenario.drivers.press_help > 0 and scenario.drivers.no_plate > 0
    assert 150 <= sum(scenario.traffic.workday) <= 350


def _minutes(at: time) -> float:
    return at.hour * 60 + at.minute


def _facts(sessions: list[tuple[str, str, int]]) -> Facts:
    return Facts(journaled={}, stored=[], sessions=sessions,
                 paid_fen=sum(fee for _, state, fee in sessions if state == "closed"),
                 debts_fen=0, dead_letters=0)


def _billed(sessions: list[tuple[str, str, int]], **expected: object) -> bool:
    wanted = Expected(entered=frozenset({PLATE, "粤B54321"}), plates_read=True,
                      **expected)  # type: ignore[arg-type]
    [billed] = [c for c in check(_facts(sessions), wanted) if c.name == "every car billed once"]
    return billed.passed


def test_with_plates_read_from_frames_cars_are_counted_not_matched_by_plate() -> None:
    misread = [(PLATE, "closed", 500), ("粤B54821", "closed", 300)]  # 3 read as 8 at entry
    assert _billed(misread)
    assert not _billed([*misread, ("粤B00000", "closed", 0)])  # a session for nobody
    refused = [(PLATE, "closed", 500), ("粤B54821", "open", 0)]  # its exit matched nobody
    assert not _billed(refused)
    assert _billed(refused, left_inside=1)  # said so by the run: the guard's matter


NO_PLATE_DAY = """\
name = "no-plate"
seed = 3                   # four of the five cars have no plate
start = 2026-05-06
[site]
entry_lanes = 1
exit_lanes = 1
[traffic]
workday = [0, 0, 0, 0, 0, 0, 0, 0, 3, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
stay_median_minutes = 60
max_cars = 5
[drivers]
pay_at_exit = 1
no_plate = 2
[[faults]]
kind = "gateway_kill"
at = 09:45:00              # two come in and two go out while the gateway is down
minutes = 30
"""


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_cars_without_a_plate_come_and_go_by_phone_and_are_billed_once(
        tmp_path: Path, test_site: ProvisionResult) -> None:
    file = tmp_path / "no-plate.toml"
    file.write_text(NO_PLATE_DAY, encoding="utf-8")
    scenario = load_scenario(file)
    planned = plan(scenario).visits
    assert any(v.behaviour == "no_plate" for v in planned)
    with MosquittoBroker(tmp_path / "mosquitto", site=test_site) as broker:
        report = run_scenario(scenario, tmp_path / "run", broker=broker, provisioned=test_site)
    assert report.passed, [c for c in report.checks if not c.passed]
    assert report.cars_out == report.cars_in == len(planned)
    with sqlite3.connect(f"file:{report.database}?mode=ro", uri=True) as db:
        by_phone = db.execute("SELECT state, fee_fen FROM sessions "
                              "WHERE plate LIKE '#P%'").fetchall()
    # Each no-plate car has its one session under its phone identity, closed and billed.
    assert len(by_phone) == report.behaviours["no_plate"]
    assert all(state == "closed" for state, _ in by_phone)
