"""Occupancy per level and in total, the lot-full rule at the entry gate, publication on change."""

from __future__ import annotations

import doctest
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

import gateway.lanes.capacity
from gateway.lanes.capacity import Capacity, CapacitySettings
from gateway.storage.store import GatewayStore
from parkguard.clock import ManualClock, utc_iso
from wire.contract.messages import CapacityState

START = datetime(2026, 5, 6, 2, 0, tzinfo=UTC)
TWO_LEVELS: dict[str, Any] = {"total": 5, "levels": {"B1": 3, "B2": 2}, "lanes": {"in2": "B2"}}


def lot(settings: dict[str, Any] | None = None, *,
        reserve: int = 0) -> tuple[Capacity, list[CapacityState]]:
    """A car park of 4 spaces (or ``settings``) that keeps what it publishes."""
    published: list[CapacityState] = []
    config = CapacitySettings.model_validate({"total": 4, "reserve": reserve, **(settings or {})})
    return Capacity(config, site="test", clock=ManualClock(START),
                    publish=published.append), published


def test_the_module_examples_hold() -> None:
    assert doctest.testmod(gateway.lanes.capacity).failed == 0


# --- settings --------------------------------------------------------------------------------


@pytest.mark.parametrize(("settings", "says"), [
    ({"total": 0}, "total"),
    ({"total": 10, "levels": {"B1": 4, "B2": 5}}, "levels add up to 9 spaces (B1 4 + B2 5) "
                                                   "but total is 10"),
    ({"total": 10, "levels": {"B1": 10}, "lanes": {"in1": "B3"}},
     "lanes.in1: level 'B3' is not one of B1"),
    ({"total": 10, "default_level": "B9"}, "default_level 'B9' is not one of all"),
    ({"total": 10, "reserve": 10}, "reserve 10 leaves no space for visitors out of 10"),
    ({"total": 10, "reserve": -1}, "reserve"),
    ({"total": 10, "levels": {"B 1": 10}}, "levels.B 1"),
    ({"total": 10, "spaces": 10}, "spaces"),
])
def test_settings_that_cannot_be_right_are_refused_saying_why(
    settings: dict[str, object], says: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        CapacitySettings.model_validate(settings)
    assert says in str(caught.value)


def test_without_levels_every_lane_feeds_the_one_level() -> None:
    settings = CapacitySettings(total=240)
    assert settings.level_spaces() == {"all": 240}
    assert settings.level_of("in7") == "all"


def test_lanes_not_named_feed_the_default_or_first_level() -> None:
    settings = CapacitySettings.model_validate(TWO_LEVELS)
    assert (settings.level_of("in1"), settings.level_of("in2")) == ("B1", "B2")
    other = CapacitySettings.model_validate({**TWO_LEVELS, "default_level": "B2"})
    assert other.level_of("in1") == "B2"


# --- counting --------------------------------------------------------------------------------


def test_entries_and_exits_count_cars_per_level_and_in_total() -> None:
    capacity, _ = lot(TWO_LEVELS)
    capacity.entered("s-1", "in1", "visitor")
    capacity.entered("s-2", "in2", "pass")
    capacity.entered("s-3", "in2", "visitor")
    state = capacity.state()
    assert (state.total, state.occupied, state.free) == (5, 3, 2)
    assert {n: (s.capacity, s.occupied, s.full) for n, s in state.levels.items()} == {
        "B1": (3, 1, False), "B2": (2, 2, True)}
    capacity.left("s-2")
    assert capacity.state().levels["B2"].occupied == 1


def test_a_repeated_entry_or_an_unknown_exit_changes_nothing() -> None:
    capacity, published = lot()
    capacity.entered("s-1", "in1")
    capacity.entered("s-1", "in1")
    capacity.left("s-never-counted")
    assert capacity.occupied == 1
    assert len(published) == 1


def test_a_plate_takes_one_space_however_many_sessions_it_has_open() -> None:
    capacity, published = lot(TWO_LEVELS)
    capacity.entered("s-1", "in2", "visitor", "粤B12345")
    for n in range(2, 56):  # a lane replaying the same entry with fresh event ids
        capacity.entered(f"s-{n}", "in1", "visitor", "粤B12345")
    capacity.entered("s-x", "in1", "visitor", "")  # unread plates are cars of their own
    capacity.entered("s-y", "in1", "visitor")
    state = capacity.state()
    assert (state.occupied, state.levels["B2"].occupied, state.levels["B1"].occupied) == (
        3, 1, 2)  # the plate parks on the level of its first session
    assert len(published) == 3
    capacity.left("s-1")
    assert capacity.occupied == 3  # the plate still has open sessions
    for n in range(2, 56):
        capacity.left(f"s-{n}")
    assert capacity.occupied == 2


def test_more_cars_than_spaces_leave_no_space_free_rather_than_a_negative_count() -> None:
    capacity, _ = lot()
    for n in range(6):
        capacity.entered(f"s-{n}", "in1", "pass")
    state = capacity.state()
    assert (state.occupied, state.free, state.full) == (6, 0, True)


# --- the rule at the gate --------------------------------------------------------------------


@pytest.mark.parametrize(("inside", "reserve", "access", "admitted"), [
    (2, 0, "visitor", True),
    (3, 0, "visitor", True),
    (4, 0, "visitor", False),
    (2, 1, "visitor", True),
    (3, 1, "visitor", False),  # the last space is kept for pass holders
    (3, 1, "pass", True),
    (3, 1, "whitelisted", True),
    (4, 0, "pass", True),  # a pass holder is let in even beyond the last space
    (9, 0, "whitelisted", True),
    (0, 0, "blacklisted", False),
])
def test_when_full_visitors_are_refused_and_pass_holders_and_whitelisted_admitted(
    inside: int, reserve: int, access: str, admitted: bool
) -> None:
    capacity, _ = lot(reserve=reserve)
    for n in range(inside):
        capacity.entered(f"s-{n}", "in1")
    assert capacity.admits(access) is admitted


def test_a_lane_feeding_a_full_level_refuses_visitors_while_another_level_has_room() -> None:
    capacity, _ = lot(TWO_LEVELS)
    capacity.entered("s-1", "in2")
    capacity.entered("s-2", "in2")
    assert not capacity.admits("visitor", lane="in2")
    assert capacity.admits("visitor", lane="in1")
    assert capacity.admits("pass", lane="in2")
    assert not capacity.state().full  # the site as a whole has room


# --- publication -----------------------------------------------------------------------------


def test_state_is_published_only_when_it_changes_and_the_full_flag_flips_with_the_count() -> None:
    capacity, published = lot(reserve=1)
    capacity.entered("s-1", "in1")
    capacity.entered("s-2", "in1")
    capacity.entered("s-3", "in1")
    capacity.left("s-3")
    assert [(s.occupied, s.full) for s in published] == [(1, False), (2, False), (3, True),
                                                         (2, False)]
    capacity.load([{"session_id": "s-1", "entry_lane": "in1"},
                   {"session_id": "s-2", "entry_lane": "in1"}])
    assert len(published) == 4  # same cars: no news


def test_publish_now_sends_the_state_even_unchanged_for_the_retained_copy() -> None:
    capacity, published = lot()
    capacity.publish_now()
    capacity.publish_now()
    assert len(published) == 2
    assert published[0].ts == START


def test_the_count_is_rebuilt_from_the_open_sessions_in_the_store(tmp_path: Path) -> None:
    store = GatewayStore.open(tmp_path / "gateway.db")
    for n, (lane, status) in enumerate([("in1", "open"), ("in2", "open"), ("in2", "closed"),
                                        ("in1", "open")]):
        store.db.table("sessions").insert({
            "session_id": f"s-{n}", "plate": f"沪A1234{n}", "state": status, "entry_lane": lane,
            "entry_at": utc_iso(START + timedelta(minutes=n)), "fee_fen": 0,
            "access": "visitor"})
    published: list[CapacityState] = []
    capacity = Capacity.from_store(CapacitySettings.model_validate(TWO_LEVELS), store,
                                   site="test", clock=ManualClock(START),
                                   publish=published.append)
    state = capacity.state()
    assert state.occupied == 3
    assert (state.levels["B1"].occupied, state.levels["B2"].occupied) == (2, 1)
    assert published[-1] == state
    store.close()


def test_the_rebuilt_count_takes_one_car_per_plate(tmp_path: Path) -> None:
    store = GatewayStore.open(tmp_path / "gateway.db")
    for n, (lane, plate) in enumerate([("in2", "沪A12345"), ("in1", "沪A12345"),
                                        ("in1", "沪A12345"), ("in1", ""), ("in1", "")]):
        store.db.table("sessions").insert({
            "session_id": f"s-{n}", "plate": plate, "state": "open", "entry_lane": lane,
            "entry_at": utc_iso(START + timedelta(minutes=n)), "fee_fen": 0,
            "access": "visitor"})
    capacity = Capacity.from_store(CapacitySettings.model_validate(TWO_LEVELS), store,
                                   site="test", clock=ManualClock(START))
    again = Capacity(CapacitySettings.model_validate(TWO_LEVELS), site="test",
                     clock=ManualClock(START))
    again.load(store.open_sessions_by_lane())
    for counted in (capacity, again):
        state = counted.state()
        assert (state.occupied, state.levels["B2"].occupied) == (3, 1)
    store.close()
