"""The staff's events in a scenario (``[[staff]]``: a drill, an accident with a hold, a
handover), end to end on the real locked-down Mosquitto with the real gateway and lane code
on a manual clock, and their invariants failing on a doctored database."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from broker.provision.generate import ProvisionResult
from broker.runner import MosquittoBroker
from parkguard.errors import ConfigError
from simulator.scenario.model import load_scenario
from simulator.scenario.run import ScenarioReport, recheck, run_scenario

SCENARIO = """
name = "staff"
seed = 5
start = 2026-05-06
[site]
entry_lanes = 1
exit_lanes = 1
[traffic]
workday = [ 0, 0, 0, 0, 0, 0, 0, 0, 6, 6, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
stay_median_minutes = 120
[[staff]]
kind = "handover"
at = 08:00:00
minutes = 10
[[staff]]
kind = "drill"
at = 09:00:00
minutes = 10
[[staff]]
kind = "accident"
at = 09:40:00
minutes = 15
"""
STAFF_CHECKS = ("each drill acknowledged", "held car refused at the exit while held",
                "each handover accepted")


def checks_of(report: ScenarioReport) -> dict[str, bool]:
    return {c.name: c.passed for c in report.checks}


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_a_drill_an_accident_and_a_handover_are_played_and_checked(
        tmp_path: Path, test_site: ProvisionResult) -> None:
    path = tmp_path / "staff.toml"
    path.write_text(SCENARIO, encoding="utf-8")
    with MosquittoBroker(tmp_path / "mosquitto", site=test_site) as broker:
        report = run_scenario(load_scenario(path), tmp_path / "run", broker=broker,
                              provisioned=test_site)
    assert report.passed, [c for c in report.checks if not c.passed]
    assert all(checks_of(report)[name] for name in STAFF_CHECKS)
    accident = next(d for d in report.expected["staff"] if d["kind"] == "accident")
    assert accident["tried"]["opened"] is False
    assert accident["tried"]["reason"] == "plate_held"
    drill = next(d for d in report.expected["staff"] if d["kind"] == "drill")
    assert drill["acks"] == drill["alerts"] > 1  # everyone's alert and each team's

    # the same files, doctored: the handover never accepted, the hold never lifted
    saved = tmp_path / "report.json"
    saved.write_text(report.to_json(), encoding="utf-8")
    database = Path(report.database)
    db = sqlite3.connect(database)
    db.execute("UPDATE handovers SET state = 'waiting', accepted_by = NULL")
    db.execute("UPDATE plate_holds SET lifted_at = NULL")
    db.commit()
    db.close()
    again = checks_of(recheck(saved))
    assert not again["each handover accepted"]
    assert not again["held car refused at the exit while held"]
    assert again["each drill acknowledged"]


def test_staff_events_need_the_gateway_in_process(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(SCENARIO.replace("[site]", '[site]\ngateway = "process"'), encoding="utf-8")
    with pytest.raises(ConfigError, match="staff events need the gateway in process"):
        load_scenario(path)
