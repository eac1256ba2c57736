"""A whole simulated site on one machine: the real gateway and lane code, virtual hardware.

Time is a :class:`~parkguard.clock.ManualClock` that jumps from one car to the
next, so a day of traffic takes as long as its MQTT round trips, not a day.

:class:`SimulatedLanes` is the same lanes without the in-process gateway, for a gateway
that runs elsewhere (a ``parkguard gateway`` subprocess a test kills and restarts); the
two then share time through :func:`parkguard.clock.shared_scaled_clock`.
"""

from __future__ import annotations

import json
import random
import secrets
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from gpiozero.pins.mock import MockFactory
from pydantic import SecretStr

from firmware.lane.config import (
    CameraSettings,
    CommandSettings,
    EvidenceSettings,
    JournalSettings,
    KioskSettings,
    LaneConfig,
    LaneTiming,
)
from firmware.lane.events import Verdict
from firmware.lane.kiosk import SimulatedKiosk
from firmware.lane.node import LaneNode
from gateway.app import GatewayApp
from gateway.config import GatewayConfig, PaymentSettings
from gateway.lanes.capacity import CapacitySettings
from gateway.money.payments import SimulatedProvider
from gateway.money.pricing import EXAMPLE_TARIFF
from parkguard.clock import Clock, ManualClock
from parkguard.configfile import BrokerSettings
from simulator.camera import ReaderKind, ShowingCamera, camera_and_reader
from simulator.driver import CarDriver, LaneStuck, Passage, SimulatedLaneWiring
from simulator.stats import percentile
from simulator.traffic import Visit
from wire.contract import topics
from wire.contract.messages import Direction, WireMessage
from wire.mqtt import BrokerAddress


def settings_of(address: BrokerAddress) -> BrokerSettings:
    """The ``[broker]`` config section that says what ``address`` says."""
    return BrokerSettings(host=address.host, port=address.port, ca_file=address.ca_file,
                          username=address.username,
                          password=None if address.password is None
                          else SecretStr(address.password),
                          max_packet_size=address.max_packet_size)


def broker_toml(settings: BrokerSettings) -> list[str]:
    """The ``[broker]`` section of a config file (TOML; JSON strings are TOML strings), as an
    installer writes it: host, port and whichever of CA file and login are set."""
    lines = ["[broker]", f"host = {json.dumps(settings.host)}", f"port = {settings.port}"]
    for key in ("ca_file", "username", "password"):
        value = getattr(settings, key)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if value is not None:
            lines.append(f"{key} = {json.dumps(str(value))}")
    return lines


def _camera_settings(reader: ReaderKind) -> CameraSettings:
    if reader == "tflite":  # a commissioned lane: the plate region of the rendered view
        from simulator.plates_render import LANE_720

        return CameraSettings(type="tflite", plate_region=LANE_720.region)
    return CameraSettings(type="simulated")


@dataclass
class SimulatedLane:
    node: LaneNode
    camera: ShowingCamera
    wiring: SimulatedLaneWiring
    driver: CarDriver
    scanner: SimulatedKiosk
    """The lane's code scanner: a driver shows a 付款码 here (``scanner.scan(code)``)."""


def build_lane(
    *, site: str, lane: str, direction: Direction, address: BrokerAddress, clock: Clock,
    factory: MockFactory, timing: LaneTiming | None = None, command_key: bytes | None = None,
    journal: Path | None = None, reader: ReaderKind = "ground_truth",
    no_plate_key: bytes | None = None,
) -> SimulatedLane:
    """One lane node on its own mock board, with its camera and the car driver that plays it;
    with ``command_key`` it obeys the gateway's signed commands; with ``no_plate_key`` (the
    site's no-plate key) its kiosk takes a phone number from a car without a plate."""
    config = LaneConfig(site=site, lane=lane, direction=direction,
                        broker=settings_of(address), timing=timing or LaneTiming(),
                        commands=CommandSettings(
                            hmac_key=None if command_key is None
                            else SecretStr(command_key.hex())),
                        journal=JournalSettings(path=journal),
                        camera=_camera_settings(reader),
                        kiosk=KioskSettings(site_key=None if no_plate_key is None
                                            else SecretStr(no_plate_key.hex())),
                        # a simulated day keeps fewer pictures than a lane's SD card would
                        evidence=EvidenceSettings(max_reads=1000, max_bytes=64 * 1024**2))
    seed = sum(lane.encode())  # each lane's camera renders its own scenes
    camera, plate_reader = camera_and_reader(reader, clock, seed=seed,
                                             region=config.camera.plate_region)
    scanner = SimulatedKiosk()
    node = LaneNode(config, clock=clock, camera=camera, reader=plate_reader,
                    pin_factory=factory, scanner=scanner)
    wiring = SimulatedLaneWiring(config, factory)
    return SimulatedLane(node, camera, wiring, CarDriver(wiring, camera, node.controller),
                         scanner)


class SimulatedLanes:
    """Entry and exit lanes on mock boards, and nothing else: the gateway runs elsewhere.

    Any :class:`~parkguard.clock.Clock` will do; with a :class:`ScaledClock` remember that
    ``timing.decide_deadline_ms`` is in the lane's (scaled) time.
    """

    def __init__(
        self, *, site: str, broker: Callable[[str], BrokerAddress], clock: Clock,
        entry_lanes: tuple[str, ...] = ("in1",), exit_lanes: tuple[str, ...] = ("out1",),
        timing: LaneTiming | None = None, workdir: Path | None = None,
        reader: ReaderKind = "ground_truth",
    ) -> None:
        self.clock = clock
        roles: list[tuple[str, Direction]] = [(x, "entry") for x in entry_lanes]
        roles += [(x, "exit") for x in exit_lanes]
        self.lanes = {
            lane: build_lane(site=site, lane=lane, direction=direction,
                             address=broker(f"lane-{lane}"), clock=clock,
                             factory=MockFactory(), timing=timing, reader=reader,
                             journal=None if workdir is None else workdir / f"lane-{lane}.db")
            for lane, direction in roles}

    def start(self) -> SimulatedLanes:
        for lane in self.lanes.values():
            lane.node.start()
        return self

    def stop(self) -> None:
        for lane in self.lanes.values():
            lane.node.stop()

    def __enter__(self) -> SimulatedLanes:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def drive(self, lane: str, plate: str | None) -> Passage:
        return self.lanes[lane].driver.drive_through(plate)


PayMethod = Literal["qr", "code", "cash", "waive", "declined"]
"""How a simulated driver pays at an exit: the lane's QR (pay page, provider, callback), a
付款码 at the lane's scanner, cash or a waiver at the dashboard, or a code the wallet
declines (a guard then lets the car out and the fee is a debt)."""

GUARD = "guard:sim"


def payment_mix(seed: int) -> Callable[[str], PayMethod]:
    """How each visitor who owes money at the exit pays, fixed by plate and seed: mostly the
    lane's QR, then a 付款码, a few in cash, and a few whose code is declined (a guard lets
    them out and the fee is a debt on the plate)."""

    def choose(plate: str) -> PayMethod:
        roll = random.Random(f"{seed}:{plate}").random()
        if roll < 0.55:
            return "qr"
        if roll < 0.88:
            return "code"
        return "cash" if roll < 0.95 else "declined"

    return choose


class ExitPayer:
    """The drivers of a simulated site paying at an exit lane (``CarDriver.payer``).

    Each payment goes through the same calls the real parts make: the pay page's order
    (``Gateway.prepay``), the simulated provider paying it and its signed notice handed to
    the gateway's callback handler (``Gateway.payment_callback``, what the HTTP route
    calls); a code shown to the lane's scanner; the dashboard's cash and waiver
    (``Gateway.take_cash`` / ``Gateway.waive``) or a guard's plain open. It returns once the
    barrier is up (the driver then drives through). ``choose`` picks the method by plate.
    """

    def __init__(self, site: SimulatedSite,
                 choose: Callable[[str], PayMethod] = lambda _plate: "qr", *,
                 patience_s: float = 10.0, seed: int = 21) -> None:
        self._site = site
        self.choose = choose
        self._patience = patience_s
        self._codes = random.Random(seed)
        self.paid: Counter[str] = Counter()
        """Payments made, by method."""
        self.callback_to_barrier_ms: list[float] = []
        """For each QR payment: the provider's notice handed to the gateway → the lane's
        barrier relay on (the gateway's open command signed, sent and obeyed)."""

    def __call__(self, lane: str, verdict: Verdict) -> None:
        service = self._site.gateway.service
        car = next((c for c in service.waiting_exits()
                    if c.lane == lane and c.session_id == verdict.session_id), None)
        method: PayMethod = "code" if car is None else self.choose(car.plate)
        if car is None:  # the lane asked its replica (gateway away): only a code will do
            self._site.lanes[lane].scanner.scan(self._new_code())
        elif method == "qr":
            self._by_qr(lane, car.plate)
        elif method == "code":
            self._site.lanes[lane].scanner.scan(self._new_code())
        elif method == "cash":
            service.take_cash(lane, actor=GUARD, reason="现金收费 cash at the booth",
                              expected_fen=car.due_fen)
        elif method == "waive":
            service.waive(lane, actor=GUARD, reason="道闸故障 barrier fault (simulated)")
        else:
            self._declined(lane)
        self._barrier_up(lane)
        self.paid[method] += 1

    def _by_qr(self, lane: str, plate: str) -> None:
        service = self._site.gateway.service
        pending = service.prepay(plate)
        if pending is None:
            raise LaneStuck(f"{plate} waits to pay at {lane} but the pay page owes nothing")
        body, headers = self._site.wallet.pay(pending.provider_ref)
        started = time.perf_counter()
        service.payment_callback(body, headers)
        self._barrier_up(lane)
        self.callback_to_barrier_ms.append((time.perf_counter() - started) * 1000)

    def _declined(self, lane: str) -> None:
        """The wallet refuses the code; the lane says so; a guard lets the car out anyway
        (a plain open: the gateway books what was due as a debt)."""
        code = self._new_code()
        self._site.wallet.declined[code] = "insufficient_funds"
        controller = self._site.lanes[lane].node.controller
        shown = controller.display
        self._site.lanes[lane].scanner.scan(code)
        _wait(lambda: controller.display is not shown, self._patience,
              f"the decline on {lane}'s display")
        gateway = self._site.gateway
        gateway.service.call(lambda: gateway.commander.open(
            lane, actor=GUARD, reason="driver cannot pay: let out, the fee is a debt"))

    def _barrier_up(self, lane: str) -> None:
        relay = self._site.lanes[lane].wiring.relay
        _wait(lambda: bool(relay.state), self._patience, f"{lane}'s barrier after paying")

    def _new_code(self) -> str:
        return f"13{self._codes.randrange(10 ** 16):016d}"  # a WeChat Pay 付款码's shape


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise LaneStuck(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.0005)


@dataclass(frozen=True)
class SiteSummary:
    """The one-screen result of a simulated day, read back from the gateway's database."""

    cars_in: int
    cars_out: int
    still_inside: int
    refused: int
    revenue_fen: int
    decisions: int
    decided_by_lane: int
    decide_p50_ms: float
    decide_p99_ms: float
    dead_letters: int
    wall_seconds: float
    database: Path
    decide_waits_ms: tuple[float, ...] = field(repr=False, default=())
    exits_by_settlement: dict[str, int] = field(default_factory=dict)
    """Cars out by how they were let go (``Passed.settled``); those the decision let go
    are counted by its reason (``prepaid``, ``pass``, ``free`` ...)."""


class SimulatedSite:
    """Gateway plus entry and exit lanes on mock boards, wired to one broker.

    ``broker`` says how a device (``"gateway"``, ``"lane-in1"``) reaches the broker,
    e.g. :meth:`broker.runner.MosquittoBroker.address` of a provisioned broker.
    ``pay_at_exit``: the drivers at the exit lanes pay what is due (:attr:`payer`, by the
    lane's QR unless its ``choose`` says otherwise; the gateway's open after money needs
    ``lane_keys``); False: a car with a fee due backs out.
    """

    def __init__(
        self,
        *,
        site: str,
        broker: Callable[[str], BrokerAddress],
        workdir: Path,
        clock: ManualClock,
        entry_lanes: tuple[str, ...] = ("in1", "in2"),
        exit_lanes: tuple[str, ...] = ("out1", "out2"),
        tariff_file: Path = EXAMPLE_TARIFF,
        timezone: str = "Asia/Shanghai",
        pin_factory: Callable[[str], MockFactory] = lambda _lane: MockFactory(),
        lane_keys: Mapping[str, bytes] | None = None,
        capacity: CapacitySettings | None = None,
        safety_file: Path | None = None,
        reader: ReaderKind = "ground_truth",
        pay_at_exit: bool = True,
        patrol_file: Path | None = None,
        sensors: Mapping[str, Literal["fire_panel", "flood"]] | None = None,
        no_plate_key: bytes | None = None,
    ) -> None:
        self.clock = clock
        self.entry_lanes, self.exit_lanes = entry_lanes, exit_lanes
        # Without keys given, each lane gets one of its own: the gateway's open after money
        # (and a guard's) is a signed command.
        keys = dict(lane_keys) if lane_keys is not None else {
            lane: secrets.token_bytes(32) for lane in (*entry_lanes, *exit_lanes)}
        self.gateway_config = GatewayConfig(
            site=site, timezone=timezone, database=workdir / "gateway.db",
            broker=settings_of(broker("gateway")),
            tariff_file=tariff_file,
            lane_keys={lane: SecretStr(key.hex()) for lane, key in keys.items()},
            capacity=capacity, safety_file=safety_file, patrol_file=patrol_file,
            sensors=dict(sensors or {}),
            payments=PaymentSettings(provider="simulated"),  # play money: demo and tests
        )
        self.gateway = GatewayApp(self.gateway_config, clock=clock, allow_simulated=True)
        self.lanes: dict[str, SimulatedLane] = {}
        self._replayed = 0  # events stored that no lane controller counted (journal replays)
        roles: list[tuple[str, Direction]] = [(x, "entry") for x in entry_lanes]
        roles += [(x, "exit") for x in exit_lanes]
        for lane, direction in roles:
            self.lanes[lane] = build_lane(  # each lane is its own board
                site=site, lane=lane, direction=direction, address=broker(f"lane-{lane}"),
                clock=clock, factory=pin_factory(lane), command_key=keys.get(lane),
                journal=workdir / f"lane-{lane}.db", reader=reader, no_plate_key=no_plate_key)
        self.payer = ExitPayer(self)
        if pay_at_exit:
            for lane in exit_lanes:
                self.lanes[lane].driver.payer = self.payer

    @property
    def wallet(self) -> SimulatedProvider:
        """The simulated payment provider: ``wallet.pay(ref)`` plays a driver paying."""
        provider = self.gateway.provider
        if not isinstance(provider, SimulatedProvider):  # pragma: no cover - built above
            raise TypeError("this site's gateway has a real payment provider")
        return provider

    def start(self) -> SimulatedSite:
        self.gateway.start()
        for lane in self.lanes.values():
            lane.node.start()
        return self

    def stop(self) -> None:
        for lane in self.lanes.values():
            lane.node.stop()
        self.gateway.stop()

    def __enter__(self) -> SimulatedSite:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def drive(self, lane: str, plate: str | None) -> Passage:
        return self.lanes[lane].driver.drive_through(plate)

    def run_day(
        self, visits: list[Visit], *, on_step: Callable[[], None] | None = None,
        before_exit: Callable[[Visit], None] | None = None,
    ) -> float:
        """Play every arrival and departure in time order; return the wall seconds it took.

        ``before_exit`` runs at each departure's time just before the car drives to the exit
        (a driver paying at the pay station on the way to the car)."""
        started = time.perf_counter()
        steps = sorted(
            [(v.arrive, 0, index) for index, v in enumerate(visits)]
            + [(v.leave, 1, index) for index, v in enumerate(visits)]
        )
        for moment, leaving, index in steps:
            visit = visits[index]
            if moment > self.clock.now():
                self.clock.set(moment)
            if leaving and before_exit is not None:
                before_exit(visit)
            self.drive(visit.exit_lane if leaving else visit.entry_lane, visit.plate)
            self.settle()
            if on_step is not None:
                on_step()
        self.settle()
        return time.perf_counter() - started

    def replay_journal(self, lane: str, message: WireMessage, timeout: float = 10.0) -> None:
        """Publish an event as ``lane`` does when it replays what it journaled offline, and
        wait until the gateway has taken it (stored, or recognised as a duplicate)."""
        service = self.gateway.service
        stored, seen = service.events_stored, service.events_stored + service.duplicates
        self.lanes[lane].node.bus.publish_and_wait(
            topics.lane_event(self.gateway_config.site, lane), message.to_json())
        deadline = time.monotonic() + timeout
        while service.events_stored + service.duplicates <= seen:
            if time.monotonic() > deadline:
                raise LaneStuck(f"the gateway did not take the event {lane} replayed")
            time.sleep(0.0005)
        service.wait_idle()
        self._replayed += service.events_stored - stored

    def settle(self, timeout: float = 30.0) -> None:
        """Wait until the gateway has stored every event the lanes have sent.

        Called after each car, as minutes of real time would separate an entry
        from the exit that needs it.
        """
        emitted = sum(lane.node.controller.events_emitted for lane in self.lanes.values())
        service = self.gateway.service
        deadline = time.monotonic() + timeout
        while service.events_stored - self._replayed < emitted:
            if time.monotonic() > deadline:
                raise LaneStuck(
                    f"gateway stored {service.events_stored} of {emitted} events after {timeout} s"
                )
            time.sleep(0.0005)
        service.wait_idle()

    def recount(self) -> None:
        """Take every event sent so far as stored, so :meth:`settle` waits only for what comes
        next: after a scenario replaced the gateway (a new one counts from zero) and made sure
        everything the lanes journaled is stored."""
        emitted = sum(lane.node.controller.events_emitted for lane in self.lanes.values())
        self._replayed = self.gateway.service.events_stored - emitted

    def summary(self, wall_seconds: float) -> SiteSummary:
        store = self.gateway.store
        with store.reader() as db:
            decisions = [json.loads(row["payload"]) for row in db.query(
                "SELECT payload FROM events WHERE type = 'decision'")]
            revenue = db.execute(
                "SELECT coalesce(sum(fee_fen), 0) FROM sessions WHERE state = 'closed'"
            ).fetchone()[0]
            exits: Counter[str] = Counter()
            for row in db.query(
                    "SELECT e.payload, d.reason FROM events e LEFT JOIN decisions d "
                    "ON d.correlation_id = json_extract(e.payload, '$.correlation_id') "
                    "WHERE e.type = 'passed'"):
                passed = json.loads(row["payload"])
                if passed["direction"] == "exit":
                    settled = passed.get("settled", "decision")
                    exits[row["reason"] or settled if settled == "decision" else settled] += 1
        waits = sorted(d["wait_ms"] for d in decisions if d["decided_by"] == "gateway")
        return SiteSummary(
            cars_in=store.count("sessions"),
            cars_out=store.count("sessions", "state = 'closed'"),
            still_inside=store.count("sessions", "state = 'open'"),
            refused=sum(1 for d in decisions if d["action"] != "open"  # held to pay: not
                        and d["reason"] not in ("payment_due", "offline_payment_due")),
            revenue_fen=int(revenue),
            decisions=len(decisions),
            decided_by_lane=sum(1 for d in decisions if d["decided_by"] == "lane"),
            decide_p50_ms=percentile(waits, 0.50),
            decide_p99_ms=percentile(waits, 0.99),
            dead_letters=store.count("dead_letters"),
            wall_seconds=wall_seconds,
            database=self.gateway_config.database,
            decide_waits_ms=tuple(waits),
            exits_by_settlement=dict(exits),
        )
