"""Long scenarios (the soak): the stepped clock that lets idle threads sleep, and the
checkpoint each simulated day that leaves a partial report a run cut short can be checked
by (``sim --recheck``), with the cars still inside allowed their open session.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from broker.provision.generate import ProvisionResult
from broker.runner import MosquittoBroker
from simulator.commands import sim
from simulator.scenario.invariants import Expected, Facts, check
from simulator.scenario.model import load_scenario
from simulator.scenario.run import ScenarioReport, recheck, run_scenario
from simulator.scenario.stepped_clock import SteppedClock

START = datetime(2026, 9, 1, 8, 0, tzinfo=UTC)


# -- the stepped clock ------------------------------------------------------------------------

def _waiting(clock: SteppedClock, event: threading.Event, seconds: float
             ) -> tuple[threading.Thread, list[bool], threading.Event]:
    """A thread in ``clock.wait(event, seconds)``; its answer lands in the list."""
    answer: list[bool] = []
    started = threading.Event()

    def wait() -> None:
        started.set()
        answer.append(clock.wait(event, seconds))

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    assert started.wait(5)
    return thread, answer, started


def test_a_wait_ends_false_when_the_clock_is_moved_past_its_deadline() -> None:
    clock = SteppedClock(START)
    event = threading.Event()
    thread, answer, _ = _waiting(clock, event, 60)
    clock.set(START + timedelta(seconds=61))
    thread.join(5)
    assert answer == [False] and not event.is_set()  # woken by the clock, the event untouched


def test_a_wait_ends_false_when_the_clock_is_advanced_to_its_deadline() -> None:
    clock = SteppedClock(START)
    thread, answer, _ = _waiting(clock, threading.Event(), 30)
    clock.advance(timedelta(seconds=30))
    thread.join(5)
    assert answer == [False]


def test_a_move_short_of_the_deadline_leaves_the_wait_to_its_event() -> None:
    clock = SteppedClock(START)
    event = threading.Event()
    thread, answer, _ = _waiting(clock, event, 60)
    clock.set(START + timedelta(seconds=59))  # wakes nobody: not due yet
    event.set()
    thread.join(5)
    assert answer == [True]  # still waiting when the event came, so it says the event


def test_a_wait_already_due_returns_at_once_and_a_set_event_says_so() -> None:
    clock = SteppedClock(START)
    assert clock.wait(threading.Event(), 0) is False
    done = threading.Event()
    done.set()
    assert clock.wait(done, 3600) is True


# -- the invariants with cars still inside (pure) ----------------------------------------------

def _facts(sessions: list[tuple[str, str, int]]) -> Facts:
    return Facts(journaled={"in1": [(1, "a")]}, stored=[("in1", 1, "a")], sessions=sessions,
                 paid_fen=500, debts_fen=0, dead_letters=0)


def _billed(facts: Facts, **expected: object) -> bool:
    wanted = Expected(**{"entered": frozenset({"粤B12345", "粤B22222"}),  # type: ignore[arg-type]
                         **expected})
    return next(c for c in check(facts, wanted) if c.name == "every car billed once").passed


def test_a_car_still_inside_may_have_its_session_open_at_a_checkpoint() -> None:
    facts = _facts([("粤B12345", "closed", 500), ("粤B22222", "open", 0)])
    assert _billed(facts, inside=frozenset({"粤B22222"}))
    assert not _billed(facts)  # at the end, an open session is a failure


@pytest.mark.parametrize("sessions", [
    [("粤B12345", "open", 0), ("粤B22222", "open", 0)],        # one that left is still open
    [("粤B12345", "closed", 500), ("粤B22222", "closed", 0)],  # one inside was closed
    [("粤B12345", "closed", 500), ("粤B22222", "open", 0), ("粤B22222", "open", 0)],  # twice
    [("粤B12345", "closed", 500)],                                # one inside has none
])
def test_a_checkpoint_still_holds_every_other_car_to_one_closed_session(
        sessions: list[tuple[str, str, int]]) -> None:
    assert not _billed(_facts(sessions), inside=frozenset({"粤B22222"}))


# -- a run cut short after its first day -------------------------------------------------------

TWO_DAYS = """
name = "two-days"
seed = 5
start = 2026-09-01
days = 2

[traffic]
workday = [0, 0, 0, 0, 0, 0, 0, 0, 3, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 2, 4]
stay_median_minutes = 60

[drivers]
pay_at_exit = 4
prepay = 1
back_out = 1
"""


class CutShort(Exception):
    """The machine went away after the first day."""


@pytest.mark.integration
@pytest.mark.timeout(240)
def test_a_run_cut_short_leaves_a_partial_report_that_the_recheck_checks(
    broker: MosquittoBroker, test_site: ProvisionResult, tmp_path: Path,
) -> None:
    scenario_file = tmp_path / "two-days.toml"
    scenario_file.write_text(TWO_DAYS, encoding="utf-8")
    partial_file = tmp_path / "report.json"
    seen: list[ScenarioReport] = []

    def first_day_only(partial: ScenarioReport) -> None:
        seen.append(partial)
        raise CutShort

    with pytest.raises(CutShort):
        run_scenario(load_scenario(scenario_file), tmp_path / "run", broker=broker,
                     provisioned=test_site, partial_report=partial_file,
                     on_day=first_day_only)
    assert len(seen) == 1
    saved = json.loads(partial_file.read_text(encoding="utf-8"))
    failed = [c for c in saved["checks"] if not c["passed"]]
    assert saved["passed"] is True and saved["partial"] is True, failed
    assert [d["day"] for d in saved["days"]] == [1] and saved["days"][0]["passed"]
    assert saved["days"][0]["gateway_db_bytes"] > 0 and saved["cars_in"] > 0
    inside = saved["expected"]["inside"]
    assert inside  # cars that came at 23:00 are still in at midnight, their sessions open
    assert Path(saved["database"]).parent.name == "day-01"  # a copy made at the checkpoint

    again = recheck(partial_file)
    assert again.passed, [c for c in again.checks if not c.passed]
    assert CliRunner().invoke(sim, ["--recheck", str(partial_file)]).exit_code == 0

    # The same files, with one car said to have left: its open session now fails.
    saved["expected"]["inside"] = inside[1:]
    gone = tmp_path / "gone.json"
    gone.write_text(json.dumps(saved), encoding="utf-8")
    failed_now = {c.name for c in recheck(gone).checks if not c.passed}
    assert failed_now == {"every car billed once"}

    # The checkpoint's copy of the gateway lost a payment: the money line fails.
    with sqlite3.connect(saved["database"]) as db:
        deleted = db.execute("DELETE FROM payments WHERE rowid = (SELECT min(rowid) FROM "
                             "payments WHERE state = 'paid' AND purpose = 'fee' AND "
                             "amount_fen > 0)").rowcount
    db.close()
    assert deleted == 1
    result = CliRunner().invoke(sim, ["--recheck", str(partial_file)])
    assert result.exit_code == 1
    assert "FAILED" in next(line for line in result.output.splitlines()
                            if "money = payments" in line)
