"""The served demo keeps moving (simulator/live.py): cars come and go in real time, some
stay inside owing money, and the gateway's books agree with what was driven."""

from __future__ import annotations

import random

from simulator.live import Inside, LiveSettings, LiveTraffic, next_move
from simulator.site import SimulatedSite

LANES = {"entry_lanes": ("in1",), "exit_lanes": ("out1",)}


def never(_plate: str) -> bool:
    return False


def test_the_first_moves_fill_the_car_park_and_a_full_one_lets_someone_leave() -> None:
    settings = LiveSettings(fewest=3, most=5)
    rng = random.Random(1)
    inside = Inside()
    for _ in range(3):
        move = next_move(inside, settings, rng, taken=never, **LANES)
        assert move.kind == "arrive" and move.lane == "in1"
        inside.plates.append(move.plate)
    inside.plates += ["粤B00001", "粤B00002"]
    move = next_move(inside, settings, rng, taken=never, **LANES)
    assert move.kind == "leave" and move.lane == "out1"
    assert move.plate in inside.plates[:2]  # one of the longest parked


def test_a_new_car_never_takes_a_plate_already_at_the_site() -> None:
    first = next_move(Inside(), LiveSettings(), random.Random(5), taken=never, **LANES)
    again = next_move(Inside(), LiveSettings(), random.Random(5),
                      taken=lambda plate: plate == first.plate, **LANES)
    assert again.kind == "arrive" and again.plate != first.plate


def test_live_traffic_on_a_real_site_leaves_cars_inside_with_bills(site: SimulatedSite) -> None:
    live = LiveTraffic(site, LiveSettings(fewest=3, most=4, seed=3))
    started = site.clock.now()
    live.fill()
    for _ in range(6):
        live.step(8.0)
    assert live.moves >= 9
    assert site.clock.now() > started
    service = site.gateway.service
    open_plates = {row["plate"] for row in site.gateway.store.open_sessions()}
    assert open_plates == set(live.inside.plates)
    assert 3 <= len(open_plates) <= 4
    owed = [service.bill_for(plate) for plate in open_plates]
    assert all(bill is not None for bill in owed)
