"""Run a scenario: a real Mosquitto, the gateway and the lanes on mock pins, the timeline
played on a manual clock, faults injected, and the invariants checked at the end.

:func:`run_scenario` takes a :class:`~simulator.scenario.model.Scenario` and returns a
:class:`ScenarioReport`; the CLI (``parkguard sim --scenario``) and the demo call it alike.
Cars are driven one at a time, as :meth:`SimulatedSite.run_day` does: after each car the
runner waits until the gateway has stored every event the lanes journaled, except while a
fault keeps events from reaching it; when the fault ends it waits for the backlog to land.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import random
import resource
import shutil
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from rich.table import Table

from broker.provision.generate import ProvisionResult
from broker.runner import MosquittoBroker
from cli.native_log import runtime_info_dropped
from firmware.lane.events import Verdict
from gateway.safety.alerts.desk import AlertDesk
from parkguard.clock import ManualClock, utc_iso
from parkguard.core.plates import NoPlateId
from parkguard.errors import ConfigError
from simulator.driver import LaneStuck
from simulator.provisioned import provision_simulated_site
from simulator.scenario import faults
from simulator.scenario.gateway_process import GatewayProcess, write_config
from simulator.scenario.invariants import Check, Expected, WalkedRound, check, gather
from simulator.scenario.links import Link
from simulator.scenario.model import Fault, Scenario, SensorEvent
from simulator.scenario.patrol import (
    READER,
    REGIME,
    PatrolReader,
    PlannedRound,
    PlannedTap,
    load_regime,
    round_taps,
)
from simulator.scenario.plan import Step, Timeline, Visit, plan
from simulator.scenario.sensors import (
    CAPTAIN,
    GUARD,
    HEARTBEAT_HOP,
    NODES,
    NoPhonesFilter,
    SensorNode,
    write_safety_file,
)
from simulator.scenario.shared_clock import PublishedClock
from simulator.scenario.staff import StaffPlayer, check_staff
from simulator.scenario.stepped_clock import SteppedClock
from simulator.site import SimulatedLane, SimulatedSite, payment_mix
from wire.mqtt import BrokerAddress

SITE = "sim"
#: With sensors on, the guard looks at the alerts page at least this often (simulated).
ALERT_WATCH = timedelta(minutes=1)
#: Real seconds the runner waits for the site to catch up after a car or a fault.
PATIENCE_S = 60.0
#: The runner's first look again (real seconds) when it waits for the site; each look
#: after is twice as long, up to POLL_MAX_S.
POLL_S = 0.0005
POLL_MAX_S = 0.004


@dataclass
class ScenarioReport:
    """What a run did and whether every invariant held."""

    name: str
    cars_planned: int
    cars_in: int = 0
    cars_out: int = 0
    backed_out: int = 0
    exits_retried: int = 0
    faults: list[dict[str, object]] = field(default_factory=list)
    behaviours: dict[str, int] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    events: int = 0
    simulated_from: str = ""
    simulated_to: str = ""
    wall_seconds: float = 0.0
    database: str = ""
    cars_during_faults: int = 0
    """Passages made while a fault was on: the faults met traffic."""
    expected: dict[str, Any] = field(default_factory=dict)
    """What the drivers did (:class:`Expected`), kept so that ``sim --recheck`` can check
    the same files again later."""
    journals: dict[str, str] = field(default_factory=dict)
    turned_away: int = 0
    """Cars that did not come in: entries closed by a fire or a flood."""
    stuck: str = ""
    """Why the run stopped early (a lane that did not do its job in time), if it did."""
    misread_refused: int = 0
    """With the TFLite reader: cars refused at the exit because their read matched nobody
    inside (a misread at the entry or the exit); they stay inside, as at a real site until
    the guard answers their help call."""
    partial: bool = False
    """A day's checkpoint of a run still going (``run_scenario(partial_report=...)``): its
    checks, and ``database`` and ``journals``, are copies of the files made at that moment,
    so a run cut short still leaves evidence that ``sim --recheck`` can check again."""
    days: list[dict[str, Any]] = field(default_factory=list)
    """Progress at each simulated day's checkpoint (and at the end): cars, events, the
    gateway's file size, memory, wall time, whether every check held then."""

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    def to_json(self) -> str:
        data = asdict(self)
        data["passed"] = self.passed
        return json.dumps(data, ensure_ascii=False, indent=2)


class _Run:
    """The running site and what the timeline has done to it so far."""

    def __init__(self, scenario: Scenario, timeline: Timeline, site: SimulatedSite,
                 broker: MosquittoBroker, provisioned: ProvisionResult,
                 report: ScenarioReport, links: Mapping[str, Link],
                 process: GatewayProcess | None = None) -> None:
        self.scenario, self.timeline, self.site = scenario, timeline, site
        self.links = links
        self.process = process
        """The gateway's own process, or None when it runs in this one."""
        self.broker, self.provisioned, self.report = broker, provisioned, report
        self.clock: ManualClock = site.clock
        self.gateway_up = True
        self.active: dict[int, Fault] = {}
        self.dark: set[str] = set()  # lanes without power
        self.entered: set[str] = set()
        self.backed: set[str] = set()
        self.left: set[str] = set()
        self.retry: list[Visit] = []
        self.tailgates = 0
        self.help_presses = 0
        self._base = 0  # events the running gateway found stored when it started
        self._codes = random.Random(scenario.seed + 1)
        self.reader: PatrolReader | None = None
        self.regime = load_regime() if scenario.patrol else None
        self.pending: list[PlannedTap] = []
        self.rounds: list[PlannedRound] = []
        self.counters: dict[str, int] = {}
        self.taps_sent = 0
        self.nodes: dict[str, SensorNode] = {}
        self.fire_on = False
        self.away: set[str] = set()  # turned away at the entry (fire, flood)
        self.acks: dict[str, datetime] = {}  # alert id -> when the guard acknowledges it
        self.ack_delay = timedelta(minutes=2)
        self.alarms_expected: list[dict[str, str]] = []
        self.until: datetime | None = None
        self.no_plate_key = no_plate_key(scenario)
        self.staff = StaffPlayer(site, timeline.visits, [])
        self.staff_on = 0  # staff events started and not yet over
        # A flood reading that follows another at the same moment: the water falls (or
        # rises) from one to the next without a dry reading between.
        self.flood_starts = {step.at for step in timeline.steps if step.what == "sensor_start"
                             and step.sensor is not None and step.sensor.kind == "flood"}
        self._exit_payer = site.payer
        self._exit_payer.choose = payment_mix(scenario.seed)
        for lane in site.exit_lanes:
            site.lanes[lane].driver.payer = self._pay

    # -- paying ---------------------------------------------------------------------------

    def address_of(self, device: str) -> BrokerAddress:
        return _address_via(self.broker, self.links, device)

    def _pay(self, lane: str, verdict: Verdict) -> None:
        """A driver pays at the exit: through the gateway when it is there to take it (the
        lane's QR, a 付款码, cash, a declined code), with a 付款码 at the lane's scanner
        when anything stands between the lane and the gateway."""
        if self.active or not self.gateway_up or self.process is not None:
            self.site.lanes[lane].scanner.scan(f"13{self._codes.randrange(10 ** 16):016d}")
            return
        self._exit_payer(lane, verdict)

    def _prepay(self, plate: str) -> None:
        """On the pay page before walking to the car (only when nothing is broken: a lane
        cut off would not hear of it and ask again)."""
        service = self.site.gateway.service
        pending = service.prepay(plate)
        if pending is None:
            return  # nothing owed yet
        body, headers = self.site.wallet.pay(pending.provider_ref)
        service.payment_callback(body, headers)
        self.settle()  # the lanes' replicas hear of it before the car reaches the exit

    # -- keeping up -----------------------------------------------------------------------

    def _emitted(self) -> int:
        return sum(lane.node.journal.last_seq() for lane in self.site.lanes.values())

    def _stored(self) -> int:
        if self.process is not None:
            return _count_events(self.site.gateway_config.database)
        return self._base + int(self.site.gateway.service.events_stored)

    def _gateway_idle(self) -> None:
        if self.process is None:
            self.site.gateway.service.wait_idle()

    def settle(self) -> None:
        """After a car: the gateway holds everything the lanes journaled (skipped while a
        fault holds events back)."""
        if self.active or not self.gateway_up:
            return
        deadline, pause = time.monotonic() + PATIENCE_S, POLL_S
        while self._stored() < self._emitted():
            if time.monotonic() > deadline:
                raise LaneStuck(f"gateway stored {self._stored()} of {self._emitted()} events "
                                f"after {PATIENCE_S} s")
            pause = _pause(pause)
        self._gateway_idle()

    def recover(self) -> None:
        """Once the last fault is over: every lane back on the broker, every journal sent,
        every event stored, every patrol tap held back uploaded and taken."""
        if self.active or not self.gateway_up:
            return
        self.taps_until(self.clock.now())
        if self.reader is not None:
            self._wait_taps()
        deadline = time.monotonic() + PATIENCE_S
        lanes = self.site.lanes.values()
        while not all(lane.node.bus.connected.is_set() and lane.node.journal.unsent_count() == 0
                      for lane in lanes) or self._stored() < self._emitted():
            if time.monotonic() > deadline:
                raise LaneStuck("the site did not catch up after the fault: "
                                f"{self._stored()} of {self._emitted()} events stored")
            time.sleep(0.005)
        self._gateway_idle()

    # -- the timeline ---------------------------------------------------------------------

    def do(self, step: Step) -> None:
        self.taps_until(step.at)
        self.advance(step.at)
        if step.what in ("sensor_start", "sensor_end") and step.sensor is not None:
            self._sensor(step.what == "sensor_start", step.sensor)
        elif step.what == "patrol" and step.patrol is not None and self.regime is not None:
            walked = round_taps(self.regime, step.patrol.person, step.patrol.kind, step.at,
                                self.counters)
            self.rounds.append(walked)
            self.pending = sorted([*self.pending, *walked.taps], key=lambda t: t.at)
        elif step.what in ("staff_start", "staff_end") and step.staff is not None:
            self.staff_on += 1 if step.what == "staff_start" else -1
            self.staff.play(step.what == "staff_start", step.staff, step.fault_index, self,
                            quiet=not self.active and self.gateway_up and not self.fire_on)
        elif step.what == "fault_start" and step.fault is not None:
            self._fault(step.fault_index, step.fault)
        elif step.what == "fault_end" and step.fault is not None:
            self._fault_over(step.fault_index, step.fault)
        elif step.visit is not None:
            (self._enter if step.what == "enter" else self._leave)(step.visit)
        self.note_alerts()

    # -- sensors and the staff ------------------------------------------------------------

    def advance(self, moment: datetime) -> None:
        """Move the clock to ``moment``, on the way sending the nodes' heartbeats and the
        guard's acknowledgements when they fall due."""
        while (due := self._next_chore()) is not None and due <= moment:
            if due > self.clock.now():
                self.clock.set(due)
            self._chores()
            if self.nodes:  # the guard watches the alerts page: a minute at a time
                self.note_alerts()
        if moment > self.clock.now():
            self.clock.set(moment)

    def _broker_up(self) -> bool:
        return not any(f.kind == "broker_restart" for f in self.active.values())

    def _next_chore(self) -> datetime | None:
        times = []
        if self._broker_up():
            times += [n.last_sent + HEARTBEAT_HOP for n in self.nodes.values()
                      if n.bus is not None and n.last_sent is not None]
        if self.gateway_up and self.process is None:
            times += list(self.acks.values())
            if self.nodes:
                times.append(self.clock.now() + ALERT_WATCH)
        return min(times, default=None)

    def _chores(self) -> None:
        now = self.clock.now()
        waiting = self.gateway_up and self._broker_up()
        for node in self.nodes.values():
            if node.bus is not None and node.last_sent is not None and self._broker_up() \
                    and node.last_sent + HEARTBEAT_HOP <= now:
                node.send(wait=waiting)
        alerts = self.site.gateway.alerts
        for alert_id, due in sorted(self.acks.items(), key=lambda kv: kv[1]):
            if due <= now and alerts is not None and self.gateway_up:
                del self.acks[alert_id]
                self.site.gateway.service.call(partial(_ack, alerts, alert_id))
        self.note_alerts()

    def note_alerts(self) -> None:
        """The guard on duty sees each new alert and will acknowledge it after his delay."""
        alerts = self.site.gateway.alerts
        if alerts is None or not self.gateway_up or self.process is not None:
            return
        for view in self.site.gateway.service.call(alerts.active):
            if view.state in ("raised", "notified") and view.alert_id not in self.acks:
                self.acks[view.alert_id] = _utc(view.raised_at) + self.ack_delay

    def _sensor(self, starts: bool, event: SensorEvent) -> None:
        self.ack_delay = timedelta(minutes=event.ack_after_minutes)
        now = utc_iso(self.clock.now())
        if event.kind == "fire":
            node = self.nodes["fire1"]
            node.fire = starts
            node.send()
            if starts:
                self.fire_on = True
                self.alarms_expected.append({"key": "fire", "at": now})
            else:
                self._fire_over()
        elif event.kind == "flood":
            node = self.nodes["flood1"]
            if not starts and self.clock.now() in self.flood_starts:
                return  # the next reading follows at once
            before, node.water_mm = node.water_mm, event.water_mm if starts else 0
            node.send()
            if starts and node.water_mm > before:  # a fall raises nothing new
                self.alarms_expected.append({"key": "flood:", "at": now})
        elif starts:
            self.nodes[event.node].die()
            self.alarms_expected.append({"key": f"missing:{event.node}", "at": now})
            self._until_alert(f"missing:{event.node}")
        else:
            self.nodes[event.node].power_on()
        self.note_alerts()

    def last_acks(self) -> None:
        """The guard answers what is still waiting at the end of the timeline; alerts raised
        from here on (the site shutting down) are not held to the target."""
        self.note_alerts()
        if self.acks:
            self.advance(max(self.acks.values()))
        self.until = self.clock.now()

    def _until_alert(self, key: str) -> None:
        alerts = self.site.gateway.alerts
        if alerts is None or not self.gateway_up:
            return
        _until(lambda: self.site.gateway.service.call(partial(alerts.open_alert, key))
               is not None, f"the gateway's alert {key}", timeout=PATIENCE_S)

    def _fire_over(self) -> None:
        """The panel is normal: the captain resets the alarm at the desk, the barriers come
        down once clear, and the cars that waited leave."""
        alarms = self.site.gateway.alarms
        if alarms is not None:
            self.site.gateway.service.call(partial(
                alarms.reset_fire, CAPTAIN, "火警解除 panel normal, site checked (scenario)"))
        for lane in self.site.lanes.values():
            controller = lane.node.controller
            _until(lambda c=controller: c.mode != "fire_open",  # type: ignore[misc]
                   "the lanes out of fire mode", timeout=PATIENCE_S)
        self.fire_on = False
        self.drive_retries()

    # -- patrol ---------------------------------------------------------------------------

    def taps_until(self, moment: datetime) -> None:
        """The reader uploads the taps made up to ``moment`` (it holds them while the broker
        is down, as the real one buffers them)."""
        if self.reader is None or any(f.kind == "broker_restart" for f in self.active.values()):
            return
        while self.pending and self.pending[0].at <= moment:
            planned = self.pending.pop(0)
            if planned.at > self.clock.now():
                self.clock.set(planned.at)
            self.reader.tap(planned)
            self.taps_sent += 1
            self._wait_taps()

    def _wait_taps(self) -> None:
        if not self.gateway_up:
            return  # the broker keeps them for the gateway's persistent session
        deadline = time.monotonic() + PATIENCE_S
        while _count_rows(self.site.gateway_config.database, "patrol_taps") < self.taps_sent:
            if time.monotonic() > deadline:
                raise LaneStuck(f"the gateway took fewer than {self.taps_sent} patrol taps "
                                f"in {PATIENCE_S} s")
            time.sleep(0.002)

    def exit_lane(self, wanted: str) -> SimulatedLane:
        """The exit a driver uses (another if ``wanted`` is dark)."""
        return self._lane(wanted, self.site.exit_lanes)

    def _lane(self, wanted: str, siblings: tuple[str, ...]) -> SimulatedLane:
        """The lane a driver uses: the planned one, or another of the same kind if it is
        dark."""
        if wanted not in self.dark:
            return self.site.lanes[wanted]
        for other in siblings:
            if other not in self.dark:
                return self.site.lanes[other]
        raise LaneStuck(f"every lane like {wanted} is without power")

    def _enter(self, visit: Visit) -> None:
        if self.fire_on:  # the lanes say leave now: nobody drives in
            self.report.turned_away += 1
            self.away.add(visit.plate)
            return
        lane = self._lane(visit.entry_lane, self.site.entry_lanes)
        if visit.behaviour == "no_plate":
            self._enter_by_phone(lane, visit)
            return
        if visit.behaviour == "back_out":
            self._back_out(lane, visit.plate)
            self.backed.add(visit.plate)
            self.report.backed_out += 1
            return
        followers = 1 if visit.behaviour == "tailgate" else 0
        passage = lane.driver.drive_through(visit.plate, followers=followers)
        if not passage.opened and "flood" in passage.reason:  # entries closed: water
            self.report.turned_away += 1
            self.away.add(visit.plate)
            return
        if not passage.opened:
            raise LaneStuck(f"{visit.plate} refused at {lane.node.config.lane}: "
                            f"{passage.reason}")
        self.tailgates += followers
        self.report.cars_during_faults += bool(self.active)
        self.entered.add(visit.plate)
        self.report.cars_in += 1
        self.settle()

    def _leave(self, visit: Visit, *, retrying: bool = False) -> None:
        if visit.plate in self.away:
            return  # it never came in
        if self.fire_on:  # people leave on foot; the car waits for the all-clear
            self.retry.append(visit)
            return
        lane = self._lane(visit.exit_lane, self.site.exit_lanes)
        if visit.behaviour == "no_plate":
            self._leave_by_phone(lane, visit, retrying=retrying)
            return
        if (visit.behaviour == "prepay" and not self.active and self.gateway_up
                and self.process is None):
            self._prepay(visit.plate)
        if visit.behaviour == "press_help":
            lane.wiring.press_help()
            self.help_presses += 1
        followers = 1 if visit.behaviour == "tailgate" else 0
        passage = lane.driver.drive_through(visit.plate, followers=followers)
        if not passage.opened and self._misread(passage.reason):
            self.report.misread_refused += 1  # the guard's matter, not the scenario's
            self.settle()
            return
        if not passage.opened:  # e.g. came in on a lane cut off, not yet heard of: later
            if retrying:
                raise LaneStuck(f"{visit.plate} still refused at {lane.node.config.lane}: "
                                f"{passage.reason}")
            self.retry.append(visit)
            self.report.exits_retried += 1
            return
        self.tailgates += followers
        self.report.cars_during_faults += bool(self.active)
        self.left.add(visit.plate)
        self.report.cars_out += 1
        self.settle()

    # -- cars without a plate -------------------------------------------------------------

    def phone_of(self, visit: Visit) -> tuple[str, str]:
        """The driver's mobile number (one per visit) and the no-plate identity it makes."""
        phone = f"139{(self.scenario.seed * 7919 + visit.number) % 10 ** 8:08d}"
        key = self.no_plate_key or b""
        return phone, NoPlateId.for_phone(phone, site_key=key).text

    def _enter_by_phone(self, lane: SimulatedLane, visit: Visit) -> None:
        phone, identity = self.phone_of(visit)
        passage = lane.driver.drive_through_by_phone(phone, lane.scanner)
        if not passage.opened and "flood" in passage.reason:  # entries closed: water
            self.report.turned_away += 1
            self.away.add(visit.plate)
            return
        if not passage.opened:
            raise LaneStuck(f"no-plate car {visit.number} refused at "
                            f"{lane.node.config.lane}: {passage.reason}")
        self.report.cars_during_faults += bool(self.active)
        self.entered.add(identity)
        self.report.cars_in += 1
        self.settle()

    def _leave_by_phone(self, lane: SimulatedLane, visit: Visit, *, retrying: bool) -> None:
        """Out by the number; at a lane held open (the free-open hour) nobody would take the
        number and the stay would stay open, so this driver waits for the lane to charge."""
        phone, identity = self.phone_of(visit)
        if lane.node.controller.mode != "normal" and not retrying:
            self.retry.append(visit)
            self.report.exits_retried += 1
            return
        passage = lane.driver.drive_through_by_phone(
            phone, lane.scanner, exit_code=f"13{self._codes.randrange(10 ** 16):016d}")
        if not passage.opened:
            if retrying:
                raise LaneStuck(f"no-plate car {visit.number} still refused at "
                                f"{lane.node.config.lane}: {passage.reason}")
            self.retry.append(visit)
            self.report.exits_retried += 1
            return
        self.report.cars_during_faults += bool(self.active)
        self.left.add(identity)
        self.report.cars_out += 1
        self.settle()

    def _misread(self, reason: str) -> bool:
        """A refusal a retry cannot cure: the rendered frame was read wrong at the entry or
        here, with nothing between the lane and the gateway."""
        return (self.scenario.site.reader == "tflite" and "no_entry_record" in reason
                and not self.active and self.gateway_up)

    def _back_out(self, lane: SimulatedLane, plate: str) -> None:
        """Up to the barrier, see it rise, reverse away: the lane closes and says so."""
        controller, pins = lane.node.controller, lane.wiring
        before = controller.verdicts
        lane.camera.show(plate)
        pins.arming.drive_high()
        _until(lambda: controller.verdicts > before, "a verdict for a car that backs out")
        verdict = controller.last_verdict
        if verdict is not None and verdict.action == "open":
            _until(lambda: bool(pins.relay.state), "the barrier up before backing out")
        pins.arming.drive_low()
        _until(lambda: controller.barrier_position == "closed" and not pins.relay.state,
               "the barrier down after the car backed out")
        self.settle()

    # -- faults ---------------------------------------------------------------------------

    def _fault(self, index: int, fault: Fault) -> None:
        kind, lane = fault.kind, fault.lane
        if kind == "gateway_kill" and self.process is not None:
            faults.gateway_sigkill(self.process)
            self.gateway_up = False
        elif kind == "gateway_kill":
            faults.gateway_crash(self.site)
            self.gateway_up = False
        elif kind == "broker_restart":
            faults.broker_stop(self.broker)
        elif kind == "lane_power_cut" and lane is not None:
            faults.lane_power_cut(self.site, lane)
            self.dark.add(lane)
        elif kind == "lane_partition" and lane is not None:
            faults.lane_partition(self.links[lane])
        elif kind == "clock_jump":
            faults.clock_jump(self.clock, fault.minutes)
        elif kind == "disk_full" and lane is not None:
            faults.disk_full(self.site, lane)
        if kind != "clock_jump":
            self.active[index] = fault
        self.report.faults.append({"kind": kind, "lane": lane, "at": utc_iso(self.clock.now()),
                                   "minutes": fault.minutes})

    def _fault_over(self, index: int, fault: Fault) -> None:
        kind, lane = fault.kind, fault.lane
        if kind == "gateway_kill":
            self._restart_gateway()
        elif kind == "broker_restart":
            faults.broker_back(self.broker)
        elif kind == "lane_power_cut" and lane is not None:
            faults.lane_power_back(self.site, lane, address_of=self.address_of,
                                   keys=self.provisioned.device("gateway").lane_keys)
            self.dark.discard(lane)
        elif kind == "lane_partition" and lane is not None:
            faults.lane_partition_heals(self.links[lane])
        elif kind == "disk_full" and lane is not None:
            faults.disk_freed(self.site, lane)
        self.active.pop(index, None)
        self.recover()
        self.drive_retries()

    def _restart_gateway(self) -> None:
        if self.process is not None:
            self.process.start()
            self.gateway_up = True
            return
        stored_before = _count_events(self.site.gateway_config.database)
        faults.gateway_back(self.site)
        self._base = stored_before
        self.gateway_up = True

    def quiet(self) -> bool:
        """Nothing under way that a check of the files so far would catch half done: no
        fault on, the gateway up, no fire, no car waiting to retry its exit, no staff
        event open."""
        return (not self.active and self.gateway_up and not self.fire_on and not self.retry
                and self.staff_on == 0)

    def drive_retries(self) -> None:
        if self.active or not self.gateway_up or self.fire_on:
            return
        waiting, self.retry = self.retry, []
        for visit in waiting:
            self._leave(visit, retrying=True)


def no_plate_key(scenario: Scenario) -> bytes | None:
    """The site's no-plate key for a run with drivers without a plate (simulated, seeded)."""
    if scenario.drivers.no_plate <= 0:
        return None
    return hashlib.sha256(f"no-plate:{scenario.seed}".encode()).digest()


def _address_via(broker: MosquittoBroker, links: Mapping[str, Link],
                 device: str) -> BrokerAddress:
    """How ``device`` reaches the broker: a lane that a scenario cuts off, through its link."""
    address = broker.address(device)
    link = links.get(device.removeprefix("lane-"))
    return address if link is None else replace(address, port=link.port)


def _check_patrollers(scenario: Scenario) -> None:
    """Each round's guard is in the regime with a route of his own (before anything starts)."""
    if not scenario.patrol:
        return
    regime = load_regime()
    for index, walk in enumerate(scenario.patrol):
        person = regime.person.get(walk.person)
        if person is None or person.route is None:
            raise ConfigError(f"patrol.{index}.person: {walk.person!r} is nobody with a route "
                              f"of his own in {REGIME.name} (e.g. "
                              f"{', '.join(p.id for p in regime.people if p.route)})")


def _ack(alerts: AlertDesk, alert_id: str) -> None:
    """The guard acknowledges on the dashboard (an alert resolved meanwhile needs none)."""
    if alerts.view(alert_id).state in ("raised", "notified"):
        alerts.ack(alert_id, GUARD, "dashboard")


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _count_events(database: Path) -> int:
    return _count_rows(database, "events")


def _count_rows(database: Path, table: str) -> int:
    db = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608
    finally:
        db.close()


def _until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline, pause = time.monotonic() + timeout, POLL_S
    while not condition():
        if time.monotonic() > deadline:
            raise LaneStuck(f"timed out after {timeout} s waiting for {what}")
        pause = _pause(pause)


def _pause(pause: float) -> float:
    """Sleep ``pause`` and return the next, longer one (up to :data:`POLL_MAX_S`): a wait
    that is answered at once costs little, one that takes longer does not keep taking the
    GIL from the threads it waits for."""
    time.sleep(pause)
    return min(pause * 2, POLL_MAX_S)


def run_scenario(
    scenario: Scenario, workdir: Path, *,
    broker: MosquittoBroker | None = None, provisioned: ProvisionResult | None = None,
    site: str = SITE, on_step: Callable[[int, int], None] | None = None,
    on_ready: Callable[[SimulatedSite], None] | None = None,
    on_start: Callable[[SimulatedSite], None] | None = None,
    before_step: Callable[[SimulatedSite, Step], None] | None = None,
    on_checked: Callable[[SimulatedSite, ScenarioReport], None] | None = None,
    partial_report: Path | None = None,
    on_day: Callable[[ScenarioReport], None] | None = None,
) -> ScenarioReport:
    """Play ``scenario`` and check it. Starts its own locked-down Mosquitto in ``workdir``
    unless given a running ``broker`` and the ``provisioned`` site it serves (whose
    lanes must include the scenario's). ``on_step(done, total)`` follows progress;
    ``on_ready(site)`` runs once the timeline is played and checked, with the site still
    up (the demo serves its dashboard there), before it is stopped; ``on_checked(site,
    report)`` likewise, with the report's checks. With neither, the files are checked once
    the site is stopped. ``on_start(site)``
    runs once the site is up, before the first step (the demo's office issues passes
    there); ``before_step(site, step)`` just before each step is played.

    With ``partial_report`` or ``on_day`` the run checks itself each simulated day (site
    time), at the first quiet moment after midnight (:meth:`_Run.quiet`): the site caught
    up, the files are copied to ``workdir/checkpoint/`` and every invariant is checked over
    the copies, with the cars still inside allowed their open session. The partial report
    goes to ``partial_report`` (replaced each day; the final report may overwrite it) and
    to ``on_day(report)``. So a run that is cut short still leaves its evidence."""
    started = time.monotonic()
    _check_patrollers(scenario)
    timeline = plan(scenario)
    shape = scenario.site
    workdir.mkdir(parents=True, exist_ok=True)
    for stale in [*workdir.glob("gateway.db*"), *workdir.glob("lane-*.db*")]:
        stale.unlink()  # each run is a fresh site (spent nonces are kept by the old clock)
    report = ScenarioReport(name=scenario.name, cars_planned=len(timeline.visits),
                            simulated_from=utc_iso(timeline.start),
                            behaviours=dict(Counter(v.behaviour for v in timeline.visits)))
    with ExitStack() as stack:
        if broker is None or provisioned is None:
            provisioned = provision_simulated_site(
                workdir / "site", site, entry_lanes=shape.entries, exit_lanes=shape.exits)
            broker = stack.enter_context(MosquittoBroker(workdir / "broker", site=provisioned))
        else:
            site = provisioned.site
        running = broker
        links = {fault.lane: Link(running.host, running.port) for fault in scenario.faults
                 if fault.kind == "lane_partition" and fault.lane is not None}
        for link in links.values():
            stack.callback(link.close)
        in_process = shape.gateway == "in_process"
        clock = SteppedClock(timeline.start) if in_process else PublishedClock(
            timeline.start, workdir / "clock")
        with runtime_info_dropped():  # the TFLite runtime's start-up INFO line
            simulated = SimulatedSite(
                site=site, broker=partial(_address_via, running, links), workdir=workdir,
                clock=clock, entry_lanes=shape.entries, exit_lanes=shape.exits,
                timezone=shape.timezone, lane_keys=provisioned.device("gateway").lane_keys,
                patrol_file=REGIME if scenario.patrol else None,
                safety_file=write_safety_file(workdir, staff=bool(scenario.staff))
                if scenario.sensors or scenario.staff else None,
                sensors=NODES if scenario.sensors else None, reader=shape.reader,
                no_plate_key=no_plate_key(scenario))
        process = None if in_process else _gateway_process(simulated, workdir, stack)
        if process is None:
            simulated.start()
        else:
            for lane in simulated.lanes.values():
                lane.node.start()
        run = _Run(scenario, timeline, simulated, running, provisioned, report, links, process)
        if scenario.sensors or scenario.staff:
            quiet, desk_log = NoPhonesFilter(), logging.getLogger("gateway.safety.alerts.desk")
            desk_log.addFilter(quiet)
            stack.callback(desk_log.removeFilter, quiet)
            for node in NODES if scenario.sensors else ():
                run.nodes[node] = SensorNode(site, node, running.address(f"sensor-{node}"),
                                             clock, workdir / "gateway.db")
                run.nodes[node].power_on()
                stack.callback(run.nodes[node].stop)
        if run.regime is not None:
            run.reader = PatrolReader(site, running.address(f"patrol-{READER}"),
                                      run.regime).start()
            stack.callback(run.reader.stop)
        try:
            if on_start is not None:
                on_start(simulated)
            checking = partial_report is not None or on_day is not None
            zone, checked_day = ZoneInfo(shape.timezone), 0
            for done, step in enumerate(timeline.steps, 1):
                day = (step.at.astimezone(zone).date() - scenario.start).days
                if checking and day > checked_day and run.quiet():
                    checked_day = day
                    so_far = _checkpoint(run, workdir, day, started, partial_report)
                    if on_day is not None:
                        on_day(so_far)
                if before_step is not None:
                    before_step(simulated, step)
                run.do(step)
                if on_step is not None:
                    on_step(done, len(timeline.steps))
            run.taps_until(datetime.max.replace(tzinfo=UTC))
            run.recover()
            run.drive_retries()
            run.recover()
            run.last_acks()
            if on_ready is not None or on_checked is not None:
                # Checked now, while up: what the hooks do next (the demo's live traffic
                # after the day) is not part of the day that was played.
                _conclude(report, run, workdir)
            if on_ready is not None:
                on_ready(simulated)
            if on_checked is not None:
                on_checked(simulated, report)
        except LaneStuck as stuck:  # the site stopped doing its job: a failed run, checked
            report.stuck = str(stuck)
        finally:
            stack.callback(_stop_quietly, simulated, run)
    if not report.checks:
        _conclude(report, run, workdir)
    report.wall_seconds = round(time.monotonic() - started, 2)
    if report.days:  # it checked itself each day: the last line is the end
        report.days.append(_progress(report, run, workdir, scenario.days, started))
        shutil.rmtree(workdir / "checkpoint", ignore_errors=True)
    return report


def _conclude(report: ScenarioReport, run: _Run, workdir: Path) -> None:
    """What the drivers did, the files to check, and the checks over them."""
    clock, shape = run.clock, run.scenario.site
    report.simulated_to = utc_iso(clock.now())
    report.expected = _expected(run, until=run.until or clock.now())
    report.journals = {lane: str(workdir / f"lane-{lane}.db")
                       for lane in (*shape.entries, *shape.exits)}
    report.database = str(workdir / "gateway.db")
    _check_files(report)


def _expected(run: _Run, *, until: datetime, inside: frozenset[str] = frozenset(),
              so_far: bool = False) -> dict[str, Any]:
    """What the drivers did, as the report keeps it. ``so_far``: at a day's checkpoint,
    only what is over by ``until`` (patrol rounds walked, sensor events whose alert is due)
    and ``inside`` the cars still in."""
    scenario = run.scenario
    rounds = [r for r in run.rounds if not so_far or r.end <= run.clock.now()]
    alarms = [a for a in run.alarms_expected if not so_far or _utc(a["at"]) <= until]
    return {"entered": sorted(run.entered), "backed_out": sorted(run.backed),
            "tailgates": run.tailgates, "help_presses": run.help_presses,
            "max_dead_letters": scenario.targets.max_dead_letters,
            "plates_read": scenario.site.reader == "tflite",
            "left_inside": run.report.misread_refused,
            "rounds": [{"person": r.person, "kind": r.kind, "route": r.route,
                        "start": utc_iso(r.start), "end": utc_iso(r.end),
                        "taps": len(r.taps)} for r in rounds],
            "alarms": alarms,
            "alarms_until": utc_iso(until),
            "alert_ack_minutes": scenario.targets.alert_ack_minutes,
            "staff": run.staff.done,
            "inside": sorted(inside)}


def _checkpoint(run: _Run, workdir: Path, day: int, started: float,
                partial_report: Path | None) -> ScenarioReport:
    """The end of simulated day ``day``: once the site has caught up, copy its files and
    check every invariant over the copies, as far as the run has got."""
    run.taps_until(run.clock.now())
    run.recover()
    run.note_alerts()
    now = run.clock.now()
    folder = workdir / "checkpoint" / f"day-{day:02d}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    lanes = [*run.scenario.site.entries, *run.scenario.site.exits]
    for name in ("gateway.db", *(f"lane-{lane}.db" for lane in lanes)):
        _copy_database(workdir / name, folder / name)
    partial = copy.deepcopy(run.report)
    partial.partial = True
    partial.simulated_to = utc_iso(now)
    # An alert raised in the last few minutes may still be waiting for its guard: it is
    # judged at the next checkpoint (or the end), not now.
    until = now - timedelta(minutes=run.scenario.targets.alert_ack_minutes)
    partial.expected = _expected(run, until=until, inside=frozenset(run.entered - run.left),
                                 so_far=True)
    partial.journals = {lane: str(folder / f"lane-{lane}.db") for lane in lanes}
    partial.database = str(folder / "gateway.db")
    _check_files(partial)
    partial.wall_seconds = round(time.monotonic() - started, 2)
    run.report.days.append(_progress(partial, run, workdir, day, started))
    partial.days = list(run.report.days)
    if partial_report is not None:
        partial_report.parent.mkdir(parents=True, exist_ok=True)
        writing = partial_report.with_suffix(".partial")
        writing.write_text(partial.to_json() + "\n", encoding="utf-8")
        writing.replace(partial_report)
    for older in (workdir / "checkpoint").glob("day-*"):
        if older != folder:
            shutil.rmtree(older, ignore_errors=True)
    return partial


def _copy_database(source: Path, target: Path) -> None:
    """A consistent copy of a SQLite file (its WAL folded in), made with SQLite's backup."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()


def _progress(report: ScenarioReport, run: _Run, workdir: Path, day: int,
              started: float) -> dict[str, Any]:
    """One line of the run's progress: how far, how big, how fast, whether it held."""
    database = workdir / "gateway.db"
    size = sum(p.stat().st_size for p in (database, database.with_name("gateway.db-wal"))
               if p.exists())
    wall = round(time.monotonic() - started, 1)
    return {"day": day, "through": utc_iso(run.clock.now()),
            "cars_in": run.report.cars_in, "cars_out": run.report.cars_out,
            "events": report.events, "gateway_db_bytes": size,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "wall_seconds": wall,
            "cars_per_s": round((run.report.cars_in + run.report.backed_out) / wall, 2)
            if wall else 0.0,
            "passed": report.passed,
            "failed": [c.name for c in report.checks if not c.passed]}


def _check_files(report: ScenarioReport) -> None:
    data = report.expected
    expected = Expected(
        entered=frozenset(str(p) for p in data["entered"]),
        backed_out=frozenset(str(p) for p in data["backed_out"]),
        tailgates=int(data["tailgates"]), help_presses=int(data["help_presses"]),
        max_dead_letters=int(data["max_dead_letters"]),
        plates_read=bool(data.get("plates_read", False)),
        left_inside=int(data.get("left_inside", 0)),
        rounds=tuple(WalkedRound(str(r["person"]), str(r["kind"]), str(r["route"]),
                                 _utc(r["start"]), _utc(r["end"]), int(r["taps"]))
                     for r in data.get("rounds", [])),
        regime=load_regime() if data.get("rounds") else None,
        alarms=tuple((str(a["key"]), _utc(str(a["at"]))) for a in data.get("alarms", [])),
        alert_ack_minutes=float(data.get("alert_ack_minutes", 5)),
        alarms_until=_utc(str(data["alarms_until"])) if data.get("alarms_until") else None,
        inside=frozenset(str(p) for p in data.get("inside", [])))
    facts = gather(Path(report.database), {k: Path(v) for k, v in report.journals.items()})
    report.checks = check(facts, expected)
    report.checks += check_staff(Path(report.database), data.get("staff", []))
    report.checks.insert(0, Check("the site kept running", not report.stuck,
                                  report.stuck or "every car passed within the drivers' "
                                                  "patience"))
    report.events = len(facts.stored)


def recheck(report_file: Path) -> ScenarioReport:
    """Check the files a past run left (named in its JSON report) against what its drivers
    did, again: after a copy, a repair, or to see that a doctored database is caught."""
    data = json.loads(report_file.read_text(encoding="utf-8"))
    data.pop("passed", None)
    data["checks"] = []
    report = ScenarioReport(**data)
    _check_files(report)
    return report


def _gateway_process(site: SimulatedSite, workdir: Path, stack: ExitStack) -> GatewayProcess:
    """The gateway in a process of its own on the runner's published clock; the in-process
    gateway the site made is never started (its database handle is let go)."""
    site.gateway.store.close()
    config = workdir / "gateway.json"
    write_config(site.gateway_config, config)
    clock = site.clock
    if not isinstance(clock, PublishedClock):  # pragma: no cover - made so above
        raise TypeError("a gateway process needs the published clock")
    process = GatewayProcess(config, clock.path, workdir / "gateway.log").start()
    stack.callback(process.stop)
    return process


def _stop_quietly(site: SimulatedSite, run: _Run) -> None:
    for lane_id, lane in site.lanes.items():
        if lane_id not in run.dark:
            lane.node.stop()
    if run.process is not None:
        run.process.stop()
    elif run.gateway_up:
        site.gateway.stop()


def day_line(report: ScenarioReport) -> str:
    """One line per simulated day of a long scenario (the soak): how far, how fast, and
    whether every invariant held over the files so far."""
    day = report.days[-1]
    held = "all invariants hold" if report.passed else "FAILED: " + ", ".join(day["failed"])
    return (f"day {day['day']} through {day['through']}: {day['cars_in']} cars in, "
            f"{day['cars_out']} out, {day['events']} events, gateway.db "
            f"{day['gateway_db_bytes'] / 1e6:.0f} MB, peak RSS {day['peak_rss_mb']} MB, "
            f"{day['wall_seconds']:.0f} s ({day['cars_per_s']} cars/s); {held}")


def report_table(report: ScenarioReport) -> Table:
    """The invariants as a table, with one line on what was played."""
    table = Table(title=f"场景 scenario {report.name} — "
                        f"{'通过 PASSED' if report.passed else '失败 FAILED'}")
    table.add_column("不变量 invariant", style="bold")
    table.add_column("结果 result")
    table.add_column("详情 detail")
    for item in report.checks:
        table.add_row(item.name, "[green]ok[/green]" if item.passed else "[red]FAILED[/red]",
                      item.detail)
    faults_line = ", ".join(f"{f['kind']}{'@' + str(f['lane']) if f['lane'] else ''}"
                            for f in report.faults) or "none"
    table.caption = (f"{report.cars_in} cars in, {report.cars_out} out, {report.backed_out} "
                     f"backed out of {report.cars_planned} planned; {report.events} events; "
                     f"{report.cars_during_faults} passages during faults; "
                     f"faults: {faults_line}; {report.simulated_from} → {report.simulated_to} "
                     f"in {report.wall_seconds:.1f} s")
    return table
