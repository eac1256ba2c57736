"""Drives a car through a simulated lane electrically: loops on, wait for the boom, loops off.

Talks to the lane only through its pins (gpiozero ``MockFactory``) and its
camera, as a real car would. At an exit with a fee due (``payment_due``) the barrier stays
down: a driver with a :data:`Payer` pays (the pay page on the phone, or a 付款码 at the
lane's scanner) and waits for the barrier; one without backs out.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from gpiozero.pins.mock import MockFactory, MockPin

from firmware.lane.config import LaneConfig
from firmware.lane.controller import LaneController
from firmware.lane.events import Verdict
from firmware.lane.kiosk import SimulatedKiosk
from firmware.lane.states import State
from simulator.camera import ShowingCamera
from wire.contract.messages import Settlement

Payer = Callable[[str, Verdict], None]
"""``(lane id, the verdict the lane gave)``: pays a ``payment_due`` verdict (by the pay page
and the provider, or by scanning a 付款码 at that lane's kiosk) and returns; the lane's
barrier rising is what says it worked."""


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
    """One car at one lane: whether it went through, the decision's reason, the fee it was
    asked for, and how the lane let it go (``Passed.settled``; None if it did not pass)."""

    opened: bool
    reason: str
    fee_fen: int
    settled: Settlement | None = None


class SimulatedLaneWiring:
    """The pins of one lane's mock board, by their role (``config.pins``).

    Inputs (loops, limit switches, help button, fire input) are driven by the simulation
    (``drive_high``/``drive_low``, or the helpers below); outputs (barrier relay or
    open/close pulses, lane light) are read (``.state``).
    """

    def __init__(self, config: LaneConfig, factory: MockFactory) -> None:
        pins = config.pins
        self.config = config
        # inputs: what the loops, the boom's switches, the driver and the fire panel say
        self.arming: MockPin = factory.pin(pins.arming_loop)
        self.safety: MockPin = factory.pin(pins.safety_loop)
        self.up_limit: MockPin = factory.pin(pins.up_limit)
        self.down_limit: MockPin = factory.pin(pins.down_limit)
        self.help_button: MockPin = factory.pin(pins.help_button)
        self.fire_input: MockPin | None = (
            None if pins.fire_input is None else factory.pin(pins.fire_input))
        # outputs: what the lane drives
        self.relay: MockPin = factory.pin(pins.barrier_relay)
        """Hold controller: on = boom held up. Pulse controller: the OPEN pulse output."""
        self.close: MockPin = factory.pin(pins.barrier_close)
        """Pulse controller only: the CLOSE pulse output."""
        self.light_green: MockPin = factory.pin(pins.light_green)
        self.light_red: MockPin = factory.pin(pins.light_red)

    @property
    def light(self) -> str:
        """What the lane light shows: ``green``, ``red``, ``off`` or ``both`` (a wiring
        fault)."""
        green, red = bool(self.light_green.state), bool(self.light_red.state)
        return {(True, False): "green", (False, True): "red",
                (False, False): "off"}.get((green, red), "both")

    def press_help(self) -> None:
        """The driver presses and releases the help button."""
        self.help_button.drive_high()
        self.help_button.drive_low()

    def boom_at(self, position: str) -> None:
        """Set the limit switches as a boom at ``up``, ``down`` or ``between`` would (the
        lane reads them only with ``barrier.limit_switches = true``)."""
        if position not in ("up", "down", "between"):
            raise ValueError(f"boom position must be up, down or between, not {position!r}")
        if position != "up":
            self.up_limit.drive_low()
        if position != "down":
            self.down_limit.drive_low()
        if position == "up":
            self.up_limit.drive_high()
        elif position == "down":
            self.down_limit.drive_high()

    def fire_panel(self, active: bool) -> None:
        """The fire panel's alarm contact as the lane's fire input sees it (active = fire)."""
        if self.fire_input is None:
            raise LaneStuck(f"lane {self.config.lane} has no fire input wired (pins.fire_input)")
        if active:
            self.fire_input.drive_high()
        else:
            self.fire_input.drive_low()


class CarDriver:
    """Plays the car at one lane."""

    def __init__(
        self,
        wiring: SimulatedLaneWiring,
        camera: ShowingCamera,
        controller: LaneController,
        *,
        patience_s: float = 10.0,
        payer: Payer | None = None,
    ) -> None:
        self._pins = wiring
        self._camera = camera
        self._controller = controller
        self._patience = patience_s
        self.payer = payer
        """Who pays a fee due at an exit; None: the driver backs out instead."""

    def drive_through(self, plate: str | None, *, followers: int = 0) -> Passage:
        """Arrive, wait for the verdict, pay if money is due (and there is a payer), and
        pass if the boom goes up; ``followers`` more vehicles cross bumper to bumper on the
        same opening (a tailgate)."""
        pins, lane = self._pins, self._controller
        verdicts_before = lane.verdicts
        self._camera.show(plate)
        pins.arming.drive_high()
        _wait_real(lambda: lane.verdicts > verdicts_before, self._patience, "a verdict")
        verdict = lane.last_verdict
        if verdict is None:
            raise LaneStuck("the lane counted a verdict but kept none")
        if verdict.payment_due and self.payer is not None:
            return self._pay_and_pass(verdict, self.payer, followers)
        if verdict.action != "open":
            pins.arming.drive_low()
            return Passage(False, verdict.reason, 0)
        return self._pass(verdict, followers)

    def drive_through_by_phone(self, phone: str, kiosk: SimulatedKiosk, *,
                               exit_code: str | None = None) -> Passage:
        """A car without a plate: onto the loop, the lane cannot read a plate and refuses;
        the driver types ``phone`` at the kiosk (at an exit, given ``exit_code``: its last
        four digits too, and that 付款码 if a fee is due), then passes if the boom goes up."""
        pins, lane = self._pins, self._controller
        before = lane.verdicts
        self._camera.show(None)
        pins.arming.drive_high()
        _wait_real(lambda: lane.verdicts > before, self._patience, "a verdict (no plate)")
        verdict = lane.last_verdict
        if verdict is not None and verdict.action == "open":  # held up: free-open, a fire
            return self._pass(verdict)
        asked = lane.verdicts
        kiosk.type_phone(phone)
        if exit_code is not None:  # an exit: the last four digits confirm the number
            kiosk.type_digits(phone.replace(" ", "")[-4:])
        _wait_real(lambda: lane.verdicts > asked, self._patience, "a verdict for the phone")
        verdict = lane.last_verdict
        if verdict is None:
            raise LaneStuck("the lane counted a verdict but kept none")
        if verdict.payment_due and exit_code is not None:
            kiosk.scan(exit_code)
            _wait_real(lambda: bool(pins.relay.state), self._patience,
                       "the barrier to rise after a 付款码")
        elif verdict.action != "open":
            pins.arming.drive_low()
            return Passage(False, verdict.reason, 0)
        return self._pass(verdict)

    def _pay_and_pass(self, verdict: Verdict, payer: Payer, followers: int = 0) -> Passage:
        """Pay, then wait for the barrier; a ``display`` command instead (the gateway's
        "code declined") sends the driver back out, still owing."""
        pins, lane = self._pins, self._controller
        shown = lane.display
        payer(lane.lane, verdict)
        _wait_real(lambda: bool(pins.relay.state) or lane.display is not shown,
                   self._patience, "the barrier to rise after paying")
        if not pins.relay.state:
            pins.arming.drive_low()
            return Passage(False, verdict.reason, 0)
        return self._pass(verdict, followers)

    def _pass(self, verdict: Verdict, followers: int = 0) -> Passage:
        pins, lane = self._pins, self._controller
        passed_before = lane.events.last_passed
        # Up for this car: with the boom held up (free-open) the relay is on already, and a
        # car that crossed before the lane stepped to ``open`` would never be counted.
        _wait_real(lambda: bool(pins.relay.state) and (
            lane.machine.state is State.OPEN or lane.mode == "fire_open"),
            self._patience, "the barrier to rise")
        pins.safety.drive_high()
        pins.arming.drive_low()
        pins.safety.drive_low()
        for _ in range(followers):  # the next vehicle, bumper to bumper
            pins.safety.drive_high()
            pins.safety.drive_low()

        def through() -> bool:
            if lane.events.last_passed is passed_before:
                return False
            if lane.mode in ("free_open", "fire_open"):  # held up: it never closes
                return True
            return lane.barrier_position == "closed" and not pins.relay.state

        _wait_real(through, self._patience, "the barrier to close")
        passed = lane.events.last_passed
        if passed is None or passed is passed_before:
            return Passage(True, verdict.reason, verdict.fee_fen)
        return Passage(True, verdict.reason, passed.fee_fen, passed.settled)
