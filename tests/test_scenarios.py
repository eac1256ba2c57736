"""The scenario engine (``parkguard sim --scenario``): the CI day end to end on the real
locked-down Mosquitto, a doctored database caught by the invariants, and bad scenario files
refused with the field named.

The CI day (``docs/examples/scenarios/ci-day.toml``) has every driver behaviour and every
fault the engine plays; it runs once per module against a broker of its own (the broker
restart fault stops it), on the conftest's provisioned test site.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from broker.provision.generate import ProvisionResult
from broker.runner import MosquittoBroker
from parkguard.errors import ConfigError
from simulator.commands import sim
from simulator.scenario.invariants import Expected, Facts, check
from simulator.scenario.model import Scenario, load_scenario
from simulator.scenario.plan import plan
from simulator.scenario.run import ScenarioReport, run_scenario

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples" / "scenarios"
CI_DAY = EXAMPLES / "ci-day.toml"


@dataclass
class CiDay:
    report: ScenarioReport
    report_file: Path
    workdir: Path


@pytest.fixture(scope="module")
def ci_day(tmp_path_factory: pytest.TempPathFactory,
           test_site: ProvisionResult) -> Iterator[CiDay]:
    workdir = tmp_path_factory.mktemp("ci-day")
    with MosquittoBroker(workdir / "mosquitto", site=test_site) as broker:
        report = run_scenario(load_scenario(CI_DAY), workdir / "run", broker=broker,
                              provisioned=test_site)
    report_file = workdir / "report.json"
    report_file.write_text(report.to_json(), encoding="utf-8")
    yield CiDay(report, report_file, workdir)


# -- the CI day, end to end ----------------------------------------------------------------

@pytest.mark.integration
@pytest.mark.timeout(300)
def test_the_ci_day_with_every_fault_passes_every_invariant(ci_day: CiDay) -> None:
    report = ci_day.report
    failed = [c for c in report.checks if not c.passed]
    assert report.passed, failed
    names = {c.name for c in report.checks}
    assert {"every event stored once", "every car billed once", "money = payments + debts",
            "patrol rounds judged as walked", "alarms acted on within the target"} <= names
    assert report.turned_away > 0  # cars that came during the fire
    assert [f["kind"] for f in report.faults] == [
        "gateway_kill", "broker_restart", "lane_power_cut", "lane_partition", "clock_jump"]
    assert report.cars_during_faults > 0  # the faults met traffic
    assert report.cars_in == report.cars_out > 0
    assert report.backed_out == report.behaviours.get("back_out", 0) > 0
    assert set(report.behaviours) == {"pay_at_exit", "prepay", "press_help", "back_out",
                                      "tailgate"}
    saved = json.loads(ci_day.report_file.read_text(encoding="utf-8"))
    assert saved["passed"] is True and len(saved["checks"]) == len(report.checks)
    print(f"\nci day: {report.cars_in} cars, {report.events} events, "
          f"{report.cars_during_faults} passages during faults, {report.wall_seconds} s")


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_sigkilling_the_gateway_process_twice_loses_no_event_and_bills_every_car_once(
    broker: MosquittoBroker, test_site: ProvisionResult, tmp_path: Path,
) -> None:
    scenario = load_scenario(EXAMPLES / "ci-gateway-kill.toml")
    assert scenario.site.gateway == "process"
    report = run_scenario(scenario, tmp_path / "run", broker=broker, provisioned=test_site)
    assert report.passed, [c for c in report.checks if not c.passed]
    assert [f["kind"] for f in report.faults] == ["gateway_kill", "gateway_kill"]
    assert report.cars_during_faults > 0
    decided = _decided_by(tmp_path / "run" / "gateway.db")
    assert decided.get("lane", 0) > 0 and decided.get("gateway", 0) > 0
    print(f"\ngateway SIGKILLed twice: {report.cars_in} cars, {report.events} events, "
          f"decisions {decided}, {report.wall_seconds} s")


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_a_full_journal_card_loses_no_event_and_the_lane_says_so_once_it_has_room(
    broker: MosquittoBroker, test_site: ProvisionResult, tmp_path: Path,
) -> None:
    report = run_scenario(load_scenario(EXAMPLES / "disk-full.toml"), tmp_path / "run",
                          broker=broker, provisioned=test_site)
    assert report.passed, [c for c in report.checks if not c.passed]
    assert report.cars_during_faults > 0  # the lane went on deciding while its card was full
    with sqlite3.connect(f"file:{tmp_path / 'run' / 'gateway.db'}?mode=ro", uri=True) as db:
        faults = db.execute("SELECT DISTINCT json_extract(payload, '$.lane') FROM events "
                            "WHERE type = 'fault' AND json_extract(payload, '$.code') = "
                            "'journal_full'").fetchall()
    db.close()
    assert faults == [("in1",)]


def _decided_by(database: Path) -> dict[str, int]:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT json_extract(payload, '$.decided_by'), count(*) FROM events "
                          "WHERE type = 'decision' GROUP BY 1").fetchall()
    db.close()
    return {str(k): int(n) for k, n in rows}


@pytest.mark.integration
def test_a_doctored_database_fails_the_recheck_with_a_non_zero_exit(ci_day: CiDay,
                                                                    tmp_path: Path) -> None:
    runner = CliRunner()
    clean = runner.invoke(sim, ["--recheck", str(ci_day.report_file)])
    assert clean.exit_code == 0, clean.output

    # A copy of the run whose gateway lost one payment and stored one event twice over.
    copy = tmp_path / "copy"
    shutil.copytree(ci_day.workdir / "run", copy, ignore=shutil.ignore_patterns("broker"))
    saved = json.loads(ci_day.report_file.read_text(encoding="utf-8"))
    saved["database"] = str(copy / "gateway.db")
    saved["journals"] = {lane: str(copy / Path(path).name)
                         for lane, path in saved["journals"].items()}
    doctored = tmp_path / "report.json"
    doctored.write_text(json.dumps(saved), encoding="utf-8")
    with sqlite3.connect(copy / "gateway.db") as db:
        db.execute("DELETE FROM payments WHERE rowid = (SELECT min(rowid) FROM payments "
                   "WHERE state = 'paid' AND purpose = 'fee' AND amount_fen > 0)")
        db.execute("UPDATE patrol_taps SET status = 'accepted', reason = NULL "
                   "WHERE reason = 'cloned'")  # as if the clone had been let through
    db.close()
    result = runner.invoke(sim, ["--recheck", str(doctored)])
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    for name in ("money = payments", "patrol rounds judged"):
        assert "FAILED" in next(line for line in lines if name in line), name


@pytest.mark.integration
@pytest.mark.timeout(180)
def test_a_guard_slower_than_the_target_fails_the_run_with_exit_one(tmp_path: Path) -> None:
    """A planted violation in a real run (its own broker): the flood alert is acknowledged
    after 10 minutes against a 5-minute target."""
    report = tmp_path / "report.json"
    result = CliRunner().invoke(sim, ["--scenario", str(EXAMPLES / "slow-guard.toml"),
                                      "--out", str(tmp_path / "run"), "--report", str(report)])
    assert result.exit_code == 1, result.output
    saved = json.loads(report.read_text(encoding="utf-8"))
    failed = [c["name"] for c in saved["checks"] if not c["passed"]]
    assert failed == ["alarms acted on within the target"], saved["checks"]
    detail = next(c["detail"] for c in saved["checks"] if not c["passed"])
    assert detail == "flood:1 answered after 0:10:00"
    assert "FAILED" in result.output


# -- bad files ----------------------------------------------------------------------------

def _scenario_text(**changes: str) -> str:
    text = CI_DAY.read_text(encoding="utf-8")
    for old, new in changes.items():
        assert old in text
        text = text.replace(old, new)
    return text


@pytest.mark.parametrize(("old", "new", "said"), [
    ("minutes = 5\n", "minutes = -5\n", "faults.1.minutes"),
    ('lane = "in2"', 'lane = "in7"', "faults.2"),
    ("pay_at_exit = 6", "pay_at_exit = 6\nwalk_on_water = 1", "drivers.walk_on_water"),
    ("days = 1", "days = 1000", "days"),
    ("workday = [ 0, 0,", "workday = [ 0,", "traffic.workday"),
])
def test_a_bad_scenario_file_is_refused_naming_the_field(
    tmp_path: Path, old: str, new: str, said: str,
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(_scenario_text(**{old: new}), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_scenario(bad)
    assert said in str(caught.value) and str(bad) in str(caught.value)
    result = CliRunner().invoke(sim, ["--scenario", str(bad), "--out", str(tmp_path / "o")])
    assert result.exit_code != 0
    assert said in result.output and "Traceback" not in result.output


def test_two_faults_of_one_kind_may_not_overlap(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(_scenario_text(**{'kind = "broker_restart"\nat = 11:00:00':
                                     'kind = "gateway_kill"\nat = 09:35:00'}), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"faults\.1 starts before the previous gateway_kill"):
        load_scenario(bad)


def test_a_patrol_round_by_nobody_on_the_roster_is_refused_before_anything_starts(
    tmp_path: Path,
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(_scenario_text(**{'kind = "late"': 'kind = "late"\nperson = "nobody"'}),
                   encoding="utf-8")
    result = CliRunner().invoke(sim, ["--scenario", str(bad), "--out", str(tmp_path / "o")])
    assert result.exit_code != 0
    assert "patrol.1.person" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o").exists()


def test_a_scenario_that_is_not_toml_is_refused_with_where(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\nstart = 2026-05-06\n[traffic\n', encoding="utf-8")
    result = CliRunner().invoke(sim, ["--scenario", str(bad), "--out", str(tmp_path / "o")])
    assert result.exit_code != 0
    assert "not valid TOML" in result.output and "line 3" in result.output


# -- the examples and the plan (pure) --------------------------------------------------------

@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.stem)
def test_every_example_scenario_is_valid(path: Path) -> None:
    scenario = load_scenario(path)
    assert plan(scenario).visits


def test_the_month_example_plans_a_hundred_thousand_cars() -> None:
    timeline = plan(load_scenario(EXAMPLES / "soak-month.toml"))
    assert len(timeline.visits) == 100_000


def test_the_plan_is_the_same_for_the_same_seed_and_in_time_order() -> None:
    data = tomllib.loads(CI_DAY.read_text(encoding="utf-8"))
    first, again = plan(Scenario.model_validate(data)), plan(Scenario.model_validate(data))
    assert first == again
    assert [s.at for s in first.steps] == sorted(s.at for s in first.steps)
    for visit in first.visits:
        assert visit.arrive < visit.leave
    other = plan(Scenario.model_validate({**data, "seed": data["seed"] + 1}))
    assert [v.plate for v in other.visits] != [v.plate for v in first.visits]


# -- the invariants (pure) -------------------------------------------------------------------

def _facts(**changes: object) -> Facts:
    base: dict[str, object] = {
        "journaled": {"in1": [(1, "a"), (2, "b")], "out1": [(1, "c")]},
        "stored": [("in1", 1, "a"), ("in1", 2, "b"), ("out1", 1, "c")],
        "sessions": [("粤B12345", "closed", 500)],
        "paid_fen": 300, "debts_fen": 200, "dead_letters": 0,
    }
    base.update(changes)
    return Facts(**base)  # type: ignore[arg-type]


def _failed(facts: Facts, **expected: object) -> set[str]:
    wanted = Expected(**{"entered": frozenset({"粤B12345"}), **expected})  # type: ignore[arg-type]
    return {c.name for c in check(facts, wanted) if not c.passed}


def test_consistent_facts_pass_every_invariant() -> None:
    assert _failed(_facts()) == set()


@pytest.mark.parametrize(("changes", "failed"), [
    ({"stored": [("in1", 1, "a"), ("in1", 2, "b"), ("out1", 1, "c"), ("out1", 1, "c")]},
     {"every event stored once", "each lane's seq 1..n without a gap"}),
    ({"stored": [("in1", 1, "a"), ("out1", 1, "c")]},
     {"every event stored once", "each lane's seq 1..n without a gap"}),
    ({"sessions": [("粤B12345", "closed", 500), ("粤B12345", "closed", 0)]},
     {"every car billed once"}),
    ({"sessions": [("粤B12345", "open", 0)], "paid_fen": 0, "debts_fen": 0},
     {"every car billed once"}),
    ({"paid_fen": 299}, {"money = payments + debts"}),
    ({"dead_letters": 1}, {"dead letters within target"}),
])
def test_a_doctored_fact_fails_its_invariant(changes: dict[str, object],
                                             failed: set[str]) -> None:
    assert _failed(_facts(**changes)) == failed


def test_a_session_for_a_car_that_backed_out_fails() -> None:
    facts = _facts(sessions=[("粤B12345", "closed", 500), ("粤B99999", "closed", 0)])
    assert _failed(facts, backed_out=frozenset({"粤B99999"})) == {"every car billed once"}
