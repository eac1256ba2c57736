"""Drives a car through a simulated lane electrically: loops on, wait for the boom, loops off.

Talks to the lane only through its pins (gpiozero ``MockFactory``) and its
camera, as a real car would.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from gpiozero.pins.mock import MockFactory, MockPin

from firmware.lane.config import LaneConfig
from firmware.lane.controller import LaneController
from simulator.camera import SimulatedCamera


class LaneStuck(RuntimeError):
    """The simulated lane did not do what a real one must within the driver's patience."""


def _wait_real(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise LaneStuck(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.0005)


@dataclass(frozen=True, slots=True)
class Passage:
    opened: bool
    reason: str
    fee_fen: int


class SimulatedLaneWiring:
    """The pins of one lane's mock board, by their role."""

    def __init__(self, config: LaneConfig, factory: MockFactory) -> None:
        self.arming: MockPin = factory.pin(config.pins.arming_loop)
        self.safety: MockPin = factory.pin(config.pins.safety_loop)
        self.relay: MockPin = factory.pin(config.pins.barrier_relay)


class CarDriver:
    """Plays the car at one lane."""

    def __init__(
        self,
        wiring: SimulatedLaneWiring,
        camera: SimulatedCamera,
        controller: LaneController,
        *,
        patience_s: float = 10.0,
    ) -> None:
        self._pins = wiring
        self._camera = camera
        self._controller = controller
        self._patience = patience_s

    def drive_through(self, plate: str | None) -> Passage:
        """Arrive, wait for the verdict, and pass if the boom goes up."""
        pins, lane = self._pins, self._controller
        verdicts_before = lane.verdicts
        self._camera.show(plate)
        pins.arming.drive_high()
        _wait_real(lambda: lane.verdicts > verdicts_before, self._patience, "a verdict")
        verdict = lane.last_verdict
        if verdict is None:
            raise LaneStuck("the lane counted a verdict but kept none")
        if verdict.action != "open":
            pins.arming.drive_low()
            return Passage(False, verdict.reason, 0)
        _wait_real(lambda: bool(pins.relay.state), self._patience, "the barrier to rise")
        pins.safety.drive_high()
        pins.arming.drive_low()
        pins.safety.drive_low()
        _wait_real(lambda: lane.barrier_position == "closed" and not pins.relay.state,
                   self._patience, "the barrier to close")
        return Passage(True, verdict.reason, verdict.fee_fen)
