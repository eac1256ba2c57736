"""A whole simulated site on one machine: the real gateway and lane code, virtual hardware.

Time is a :class:`~parkguard.clock.ManualClock` that jumps from one car to the
next, so a day of traffic takes as long as its MQTT round trips, not a day.

:class:`SimulatedLanes` is the same lanes without the in-process gateway, for a gateway
that runs elsewhere (a ``parkguard gateway`` subprocess a test kills and restarts); the
two then share time through :func:`parkguard.clock.shared_scaled_clock`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from gpiozero.pins.mock import MockFactory
from pydantic import SecretStr

from firmware.lane.config import (
    CameraSettings,
    CommandSettings,
    JournalSettings,
    LaneConfig,
    LaneTiming,
)
from firmware.lane.node import LaneNode
from gateway.app import GatewayApp
from gateway.config import GatewayConfig
from gateway.lanes.capacity import CapacitySettings
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


def build_lane(
    *, site: str, lane: str, direction: Direction, address: BrokerAddress, clock: Clock,
    factory: MockFactory, timing: LaneTiming | None = None, command_key: bytes | None = None,
    journal: Path | None = None, reader: ReaderKind = "ground_truth",
) -> SimulatedLane:
    """One lane node on its own mock board, with its camera and the car driver that plays it;
    with ``command_key`` it obeys the gateway's signed commands."""
    config = LaneConfig(site=site, lane=lane, direction=direction,
                        broker=settings_of(address), timing=timing or LaneTiming(),
                        commands=CommandSettings(
                            hmac_key=None if command_key is None
                            else SecretStr(command_key.hex())),
                        journal=JournalSettings(path=journal),
                        camera=_camera_settings(reader))
    seed = sum(lane.encode())  # each lane's camera renders its own scenes
    camera, plate_reader = camera_and_reader(reader, clock, seed=seed,
                                             region=config.camera.plate_region)
    node = LaneNode(config, clock=clock, camera=camera, reader=plate_reader,
                    pin_factory=factory)
    wiring = SimulatedLaneWiring(config, factory)
    return SimulatedLane(node, camera, wiring, CarDriver(wiring, camera, node.controller))


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


class SimulatedSite:
    """Gateway plus entry and exit lanes on mock boards, wired to one broker.

    ``broker`` says how a device (``"gateway"``, ``"lane-in1"``) reaches the broker,
    e.g. :meth:`broker.runner.MosquittoBroker.address` of a provisioned broker.
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
    ) -> None:
        self.clock = clock
        self.entry_lanes, self.exit_lanes = entry_lanes, exit_lanes
        keys = dict(lane_keys or {})
        self.gateway_config = GatewayConfig(
            site=site, timezone=timezone, database=workdir / "gateway.db",
            broker=settings_of(broker("gateway")),
            tariff_file=tariff_file,
            lane_keys={lane: SecretStr(key.hex()) for lane, key in keys.items()},
            capacity=capacity, safety_file=safety_file,
        )
        self.gateway = GatewayApp(self.gateway_config, clock=clock)
        self.lanes: dict[str, SimulatedLane] = {}
        self._replayed = 0  # events stored that no lane controller counted (journal replays)
        roles: list[tuple[str, Direction]] = [(x, "entry") for x in entry_lanes]
        roles += [(x, "exit") for x in exit_lanes]
        for lane, direction in roles:
            self.lanes[lane] = build_lane(  # each lane is its own board
                site=site, lane=lane, direction=direction, address=broker(f"lane-{lane}"),
                clock=clock, factory=pin_factory(lane), command_key=keys.get(lane),
                journal=workdir / f"lane-{lane}.db", reader=reader)

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

    def summary(self, wall_seconds: float) -> SiteSummary:
        store = self.gateway.store
        with store.reader() as db:
            decisions = [json.loads(row["payload"]) for row in db.query(
                "SELECT payload FROM events WHERE type = 'decision'")]
            revenue = db.execute(
                "SELECT coalesce(sum(fee_fen), 0) FROM sessions WHERE state = 'closed'"
            ).fetchone()[0]
        waits = sorted(d["wait_ms"] for d in decisions if d["decided_by"] == "gateway")
        return SiteSummary(
            cars_in=store.count("sessions"),
            cars_out=store.count("sessions", "state = 'closed'"),
            still_inside=store.count("sessions", "state = 'open'"),
            refused=sum(1 for d in decisions if d["action"] != "open"),
            revenue_fen=int(revenue),
            decisions=len(decisions),
            decided_by_lane=sum(1 for d in decisions if d["decided_by"] == "lane"),
            decide_p50_ms=percentile(waits, 0.50),
            decide_p99_ms=percentile(waits, 0.99),
            dead_letters=store.count("dead_letters"),
            wall_seconds=wall_seconds,
            database=self.gateway_config.database,
            decide_waits_ms=tuple(waits),
        )
