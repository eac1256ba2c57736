"""Simulated lanes that read pixels: each capture renders a gate-camera frame of the plate the
car shows (``simulator.plates_render``), the lane's real TFLite reader reads it (fusing more
frames when the first read is not trusted), and the gateway matches and bills the car.

Nothing here hands the reader the plate: ``Frame.truth`` is only used to score the reads.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from gpiozero.pins.mock import MockFactory

from broker.runner import MosquittoBroker
from firmware.lane.config import CameraSettings, LaneConfig
from firmware.lane.devices.camera import Frame
from firmware.lane.devices.reader import TfliteReader
from firmware.lane.node import LaneNode
from gateway.money.pricing import EXAMPLE_TARIFF, SitePricing
from parkguard.clock import ManualClock
from parkguard.core.plates.grammar import PlateSeries
from simulator.driver import SimulatedLaneWiring
from simulator.plates_render import RenderingCamera
from simulator.plates_render.texts import random_plate
from simulator.site import SimulatedSite, settings_of
from tests.conftest import TEST_SITE
from tests.helpers import Recorder, eventually
from wire.contract import topics

pytestmark = pytest.mark.integration

TEN_O_CLOCK = datetime(2026, 5, 6, 10, 0, tzinfo=UTC)
CARS = 8


def plates(count: int) -> list[str]:
    """Blue, yellow and green car plates, drawn like the held-out set (seeded)."""
    rng = np.random.default_rng(2026)
    kinds = (PlateSeries.ORDINARY, PlateSeries.NEW_ENERGY_SMALL)
    return [random_plate(rng, kinds[k % 2])[1] for k in range(count)]


@pytest.fixture
def site(broker: MosquittoBroker, tmp_path: Path) -> Iterator[SimulatedSite]:
    with SimulatedSite(site=TEST_SITE, broker=broker.address, workdir=tmp_path,
                       clock=ManualClock(TEN_O_CLOCK), entry_lanes=("in1",),
                       exit_lanes=("out1",), reader="tflite") as running:
        yield running


def test_cars_read_from_rendered_frames_are_matched_at_the_exit_and_billed(
    site: SimulatedSite,
) -> None:
    cars = plates(CARS)
    entered = {}
    for plate in cars:
        entered[plate] = site.clock.now()
        assert site.drive("in1", plate).opened, f"{plate} refused at the entry"
        site.settle()
        site.clock.advance(timedelta(minutes=1))

    site.clock.advance(timedelta(hours=1, minutes=30))
    pricing = SitePricing.from_file(EXAMPLE_TARIFF)
    for plate in cars:
        passage = site.drive("out1", plate)
        site.settle()
        assert passage.opened, f"{plate} not matched at the exit: {passage.reason}"
        owed = pricing.quote(plate=plate, entry=entered[plate], exit=site.clock.now())
        assert passage.fee_fen == owed.total_fen > 0, plate
        site.clock.advance(timedelta(minutes=1))

    with site.gateway.store.reader() as db:
        sessions = list(db.query("SELECT plate, state, fee_fen FROM sessions"))
        reads = [json.loads(row["payload"]) for row in db.query(
            "SELECT payload FROM events WHERE type = 'plate_read'")]
    assert len(sessions) == CARS, "a misread made a second session or lost one"
    assert all(s["state"] == "closed" and s["fee_fen"] > 0 for s in sessions)
    assert len(reads) == 2 * CARS
    assert all(r["reader"] == "tflite" and r["read_ms"] > 0 for r in reads)
    exact = sum(r["plate"] in cars for r in reads)
    print(f"\n{exact} of {len(reads)} reads exact; read ms: "
          f"{sorted(round(r['read_ms'], 1) for r in reads)}")
    # Misreads are allowed (fuzzy matching mops them up) but most reads must be exact.
    assert exact >= 0.75 * len(reads), [r["plate"] for r in reads]


class CountingCamera(RenderingCamera):
    """The rendering camera, counting the frames the lane takes."""

    captures = 0

    def capture(self) -> Frame:
        self.captures += 1
        return super().capture()


@pytest.mark.parametrize(("trust", "frames_read"), [(0.0, 1), (1.0, 4)])
def test_the_lane_fuses_more_frames_only_when_the_first_read_is_not_trusted(
    broker: MosquittoBroker, trust: float, frames_read: int,
) -> None:
    clock = ManualClock(TEN_O_CLOCK)
    config = LaneConfig(site=TEST_SITE, lane="in9", direction="entry",
                        broker=settings_of(broker.address("lane-in9")),
                        camera=CameraSettings(type="tflite", fuse_frames=4,
                                              trust_confidence=trust))
    factory = MockFactory()
    camera = CountingCamera(clock=clock, seed=11)
    with Recorder(broker, topics.lane_event(TEST_SITE, "in9"), device="monitor-watch1") as rec, \
            LaneNode(config, clock=clock, camera=camera, reader=TfliteReader(),
                     pin_factory=factory) as node:
        camera.show("粤B12345")
        SimulatedLaneWiring(config, factory).arming.drive_high()
        # No gateway here: once the lane has asked, pass its deadline so it decides alone.
        # (The read is published with the decision: docs/lane.md, "Journal and outbox".)
        eventually(lambda: node.controller.last_decide_request is not None,
                   what="the decide request")
        clock.advance(timedelta(seconds=1))
        eventually(lambda: any(json.loads(p)["type"] == "decision" for p in rec.payloads()),
                   what="the lane's own decision")
    read = next(json.loads(p) for p in rec.payloads() if json.loads(p)["type"] == "plate_read")
    assert camera.captures == frames_read
    assert read["plate"] == "粤B12345" and read["reader"] == "tflite"
