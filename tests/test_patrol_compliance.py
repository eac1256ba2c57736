"""The compliance engine: round statuses, obligations, config validation, properties."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parkguard.configfile import parse_config
from parkguard.core.patrol import PatrolConfig, Tap, evaluate, evaluate_round, load_patrol_config
from parkguard.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[1] / "docs/examples/patrols.toml"
CONFIG = load_patrol_config(EXAMPLE)
LOOP = CONFIG.route["b1-loop"]  # ramp(0,0) booth(60,0) east(120,40) pump(60,90), ordered
T0 = datetime(2026, 5, 6, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai, shift a


def tap(minute: float, checkpoint: str, person: str = "wang", n: int = 0,
        answers: dict[str, str] | None = None) -> Tap:
    return Tap(key=f"r{n}#{minute}:{checkpoint}", at=T0 + timedelta(minutes=minute),
               checkpoint=checkpoint, person=person, answers=tuple(sorted((answers or {}).items())))


GOOD = [tap(0, "b1-ramp"), tap(2, "b1-booth"), tap(5, "b1-east"), tap(9, "b1-pump")]


def test_a_round_walked_in_order_within_the_limit_is_done() -> None:
    result = evaluate_round(CONFIG, LOOP, GOOD)
    assert (result.status, result.flags, result.missed) == ("done", (), ())
    assert result.visited == ("b1-ramp", "b1-booth", "b1-east", "b1-pump")
    assert result.minutes == 9


def test_statuses_each_as_it_happened() -> None:
    late = [tap(0, "b1-ramp"), tap(10, "b1-booth"), tap(25, "b1-east"), tap(40, "b1-pump")]
    assert evaluate_round(CONFIG, LOOP, late).status == "late"
    missed = evaluate_round(CONFIG, LOOP, GOOD[:2] + GOOD[3:])
    assert (missed.status, missed.missed) == ("missed", ("b1-east",))
    swapped = [tap(0, "b1-ramp"), tap(3, "b1-east"), tap(6, "b1-booth"), tap(9, "b1-pump")]
    assert evaluate_round(CONFIG, LOOP, swapped).status == "out_of_order"
    fast = [tap(0, "b1-ramp"), tap(0.1, "b1-booth"), tap(0.2, "b1-east"), tap(0.3, "b1-pump")]
    result = evaluate_round(CONFIG, LOOP, fast)
    assert result.status == "impossible"
    assert result.fast_legs[0].needed_seconds == 24.0  # 60 m at 2.5 m/s
    deadline = evaluate_round(CONFIG, LOOP, GOOD, deadline=T0 + timedelta(minutes=5))
    assert deadline.status == "late"


def test_a_checklist_must_be_answered_and_faults_are_reported() -> None:
    route = CONFIG.route["fire-equipment"]
    full = {"present": "ok", "pressure_or_hose_ok": "ok", "seal_intact": "ok"}
    half = evaluate_round(CONFIG, route, [tap(0, "b2-extinguisher", answers=full),
                                          tap(3, "b2-hydrant", answers={"present": "ok"})])
    assert half.status == "missed" and ("b2-hydrant", "seal_intact") in half.unanswered
    done = evaluate_round(CONFIG, route, [
        tap(0, "b2-extinguisher", answers={**full, "seal_intact": "fault: seal broken"}),
        tap(3, "b2-hydrant", answers=full)])
    assert done.status == "done"
    assert done.faults == (("b2-extinguisher", "seal_intact", "fault: seal broken"),)


def test_joint_inspection_needs_both_within_the_window() -> None:
    route = CONFIG.route["joint"]
    taps: list[Tap] = []
    for i, point in enumerate(route.checkpoints):
        taps.append(tap(10 * i, point, "zhou", 1))
        taps.append(tap(10 * i + (2 if i < 3 else 9), point, "liu", 2))  # last one 9 min late
    start, end = T0, T0 + timedelta(days=1)
    (result,) = evaluate(CONFIG, taps, start, end, now=end, only=["joint-inspection"])
    assert result.counted == 0 and result.rounds[0].missed == ("b2-hydrant",)
    taps.append(tap(33, "b2-hydrant", "liu", 3))
    (result,) = evaluate(CONFIG, taps, start, end, now=end, only=["joint-inspection"])
    assert result.counted == 1 and result.subject == "captain+manager"


def test_obligation_status_over_time_and_escalation() -> None:
    shift_start = datetime(2026, 5, 6, 0, 0, tzinfo=UTC)  # 08:00 local, shift a
    def judge(now: datetime, taps: list[Tap]) -> Any:
        return next(r for r in evaluate(CONFIG, taps, shift_start, shift_start + timedelta(
            hours=8), now=now, only=["guard-round"]) if r.subject == "wang")
    assert judge(shift_start + timedelta(hours=1), []).status == "pending"
    overdue = judge(shift_start + timedelta(hours=7), [])
    assert (overdue.status, overdue.escalate_to) == ("overdue", "chen")
    assert judge(shift_start + timedelta(hours=9), []).status == "missed"
    assert judge(shift_start + timedelta(hours=9), GOOD).status == "met"


def _mutated(**change: Any) -> dict[str, Any]:
    data = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    data.update(change)
    return data


@pytest.mark.parametrize(("change", "message"), [
    ({"routes": [{"id": "x", "name": "x", "checkpoints": ["nowhere"]}]}, "unknown checkpoint"),
    ({"allow_plain_tags": False, "checkpoints": [{"id": "p", "tag": "04AA0000000099", "place": "p",
                                                   "level": "B1", "position": [0, 0]}]},
     "no SUN key"),
    ({"timezone": "Mars/Olympus"}, "unknown time zone"),
])
def test_config_errors_name_the_field(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(PatrolConfig, _mutated(**change), source="patrols.toml")


# --- properties ----------------------------------------------------------------------------

points = st.sampled_from(LOOP.checkpoints)
taps_strategy = st.lists(
    st.builds(tap, st.floats(0, 120, allow_nan=False).map(lambda m: round(m, 2)), points,
              st.just("wang"), st.integers(0, 3)),
    max_size=12, unique_by=lambda t: t.key)


@settings(max_examples=200, deadline=None)
@given(taps=taps_strategy, data=st.data())
def test_a_rounds_status_does_not_depend_on_arrival_order(taps: list[Tap],
                                                          data: st.DataObject) -> None:
    shuffled = data.draw(st.permutations(taps))
    assert evaluate_round(CONFIG, LOOP, shuffled) == evaluate_round(CONFIG, LOOP, taps)


@settings(max_examples=300, deadline=None)
@given(taps=taps_strategy, extra=taps_strategy)
def test_an_added_tap_never_turns_done_into_missed(taps: list[Tap], extra: list[Tap]) -> None:
    before = evaluate_round(CONFIG, LOOP, taps)
    keys = {t.key for t in taps}
    after = evaluate_round(CONFIG, LOOP, taps + [t for t in extra if t.key not in keys])
    if before.status == "done":
        assert "missed" not in after.flags


@settings(max_examples=100, deadline=None)
@given(taps=taps_strategy, data=st.data())
def test_obligations_do_not_depend_on_arrival_order(taps: list[Tap], data: st.DataObject) -> None:
    end = T0 + timedelta(days=1)
    shuffled = data.draw(st.permutations(taps))
    assert evaluate(CONFIG, shuffled, T0, end, now=end) == evaluate(CONFIG, taps, T0, end,
                                                                    now=end)
