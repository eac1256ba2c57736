"""``make bench``: the gate decision time — loop trigger to barrier command — online and
offline, beside the bare MQTT ping-pong.

On a private Mosquitto (TLS, per-device users, ACLs) started for the run, one entry lane
(in1) and one exit lane (out1) of :class:`~simulator.site.SimulatedLanes` on mock pins and
the system clock, and an in-process :class:`~gateway.app.GatewayApp`:

1. **baseline** — the bare paho QoS 1 request/response with ``TCP_NODELAY`` of
   :mod:`simulator.bench` (lane in1 ↔ gateway): one MQTT round trip.
2. **online** — the gateway answers. The clock starts when the arming loop's pin goes high
   (the car arrives) and stops when the lane calls ``Barrier.raise_`` (the barrier command):
   loop event → ``vehicle_detected`` and ``plate_read`` journaled (``synchronous=FULL``) →
   plate read → decide request → gateway verdict → reply → ``decision`` journaled → relay.
   Each car drives in, then out (an exit also prices the stay).
3. **offline** — the gateway is stopped (the broker stays): every lane waits out its decide
   deadline (``timing.decide_deadline_ms``, 300 ms by default, reported on its own row as the
   lane measured it), then decides from its replica. Exits find cars that came in online
   and are in the exit lane's replica; entries are new cars. The last row is the offline
   decision *without* the deadline wait: what the lane itself costs when it decides alone
   (replica look-up, pricing, the evidence and the decision journaled with FULL sync).

The first ``--warmup`` cars of each phase are thrown away (connections, SQLite page cache,
pydantic's first validation, the replica's tariff). Same-run baselines for the same reason
as :mod:`simulator.bench`: only ratios carry over between machines. The lanes, their car
drivers and the gateway share one process (one GIL) here; a site gives each lane a Pi.
``tests/test_bench_gate.py`` runs it with tiny numbers; no speed targets there.
"""

from __future__ import annotations

import argparse
import logging
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from broker.runner import MosquittoBroker
from firmware.lane.config import LaneTiming
from gateway.app import GatewayApp
from gateway.config import GatewayConfig, ReplicaSettings
from parkguard.clock import SystemClock
from simulator.bench import (
    BASELINE_RR,
    SITE,
    BenchError,
    BenchRow,
    compared,
    describe,
    plate_for,
    report_console,
    request_response,
    run_and_report,
)
from simulator.provisioned import provision_simulated_site
from simulator.site import SimulatedLane, SimulatedLanes, settings_of
from wire.mqtt import BrokerAddress

DEFAULT_CARS = 200
DEFAULT_OFFLINE_CARS = 40
DEFAULT_DEADLINE_MS = 300
WARMUP = 5
_TIMEOUT_S = 10.0

GATE_ONLINE = "gate decision online: loop → barrier command"
GATE_ONLINE_ENTRY = "  … entry lane (gateway answers)"
GATE_ONLINE_EXIT = "  … exit lane (gateway prices the stay)"
GATE_OFFLINE = "gate decision offline: loop → barrier command"
GATE_DEADLINE = "  … of which waiting out the decide deadline"
GATE_OFFLINE_OWN = "  … offline without the deadline wait"


@dataclass
class _Timed:
    """Barrier commands of one lane, as ``perf_counter`` instants."""

    raises: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _instrument(lane: SimulatedLane) -> _Timed:
    """Note the instant of every ``Barrier.raise_`` call (the barrier command) of ``lane``."""
    timed = _Timed()
    barrier = lane.node.hardware.barrier
    raise_ = barrier.raise_

    def recording() -> None:
        at = time.perf_counter()
        with timed.lock:
            timed.raises.append(at)
        raise_()

    setattr(barrier, "raise_", recording)  # noqa: B010 - an instance attribute, on purpose
    return timed


def _wait(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + _TIMEOUT_S
    while not condition():
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {_TIMEOUT_S} s waiting for {what}")
        time.sleep(0.0002)


@dataclass(frozen=True, slots=True)
class GatePassage:
    """One car: loop trigger → barrier command (ms), and who decided after how long."""

    gate_ms: float
    decided_by: str
    wait_ms: float
    reason: str


def drive(lane: SimulatedLane, timed: _Timed, plate: str) -> GatePassage:
    """Drive one car through ``lane`` by its pins; time arming loop → barrier command."""
    controller, pins = lane.node.controller, lane.wiring
    verdicts = controller.verdicts
    with timed.lock:
        raised = len(timed.raises)
    lane.camera.show(plate)
    started = time.perf_counter()
    pins.arming.drive_high()
    _wait(lambda: controller.verdicts > verdicts, f"a verdict for {plate}")
    verdict = controller.last_verdict
    if verdict is None or verdict.action != "open":
        pins.arming.drive_low()
        raise BenchError(f"{plate} refused at {controller.lane}: "
                         f"{verdict.reason if verdict else 'no verdict'}")
    _wait(lambda: len(timed.raises) > raised, "the barrier command")
    gate_ms = (timed.raises[raised] - started) * 1000
    _wait(lambda: bool(pins.relay.state), "the barrier to rise")
    pins.safety.drive_high()
    pins.arming.drive_low()
    pins.safety.drive_low()
    _wait(lambda: controller.barrier_position == "closed" and not pins.relay.state,
          "the barrier to close")
    return GatePassage(gate_ms, verdict.decided_by, verdict.wait_ms, verdict.reason)


@dataclass(frozen=True, slots=True)
class GateRun:
    online_entry: list[GatePassage]
    online_exit: list[GatePassage]
    offline: list[GatePassage]
    deadline_ms: int


def gate_runs(address: Callable[[str], BrokerAddress], workdir: Path, *, cars: int,
              offline_cars: int, warmup: int, deadline_ms: int,
              on_step: Callable[[], None] = lambda: None) -> GateRun:
    """``warmup + cars`` cars in and out online, then ``warmup + offline_cars`` out and as
    many new ones in with the gateway stopped."""
    workdir.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        (workdir / f"gateway.db{suffix}").unlink(missing_ok=True)
    clock = SystemClock()
    config = GatewayConfig(site=SITE, database=workdir / "gateway.db",
                           broker=settings_of(address("gateway")),
                           replicas=ReplicaSettings(lanes=["in1", "out1"]))
    stay_inside = warmup + offline_cars
    online_entry: list[GatePassage] = []
    online_exit: list[GatePassage] = []
    offline: list[GatePassage] = []
    app = GatewayApp(config, clock=clock).start()
    gateway_up = True
    try:
        lanes = SimulatedLanes(
            site=SITE, broker=address, clock=clock, entry_lanes=("in1",),
            exit_lanes=("out1",), timing=LaneTiming(decide_deadline_ms=deadline_ms),
            workdir=workdir / "lanes").start()
    except BaseException:
        app.stop()
        raise
    try:
        entry, exit_ = lanes.lanes["in1"], lanes.lanes["out1"]
        timed_entry, timed_exit = _instrument(entry), _instrument(exit_)
        _wait(lambda: entry.node.bus.connected.is_set() and exit_.node.bus.connected.is_set(),
              "both lanes on the broker")
        service = app.service

        def settle() -> None:  # the gateway has stored what the lanes sent (as time would)
            emitted = entry.node.controller.events_emitted + exit_.node.controller.events_emitted
            _wait(lambda: service.events_stored >= emitted, "the gateway to store the events")
            service.wait_idle()

        # Online: each car in, then out; the offline phase's cars stay inside.
        for index in range(warmup + cars):
            passage = drive(entry, timed_entry, plate_for(index))
            settle()
            out = drive(exit_, timed_exit, plate_for(index))
            settle()
            if index >= warmup:
                online_entry.append(passage)
                online_exit.append(out)
            on_step()
        first = warmup + cars
        for index in range(first, first + stay_inside):
            drive(entry, timed_entry, plate_for(index))
            settle()
            on_step()
        _wait(lambda: exit_.node.replica.sessions_inside == stay_inside,
              "the exit lane's replica to hold the cars inside")
        app.stop()  # the gateway goes; the broker stays: decide requests go unanswered
        gateway_up = False
        for step in range(stay_inside):
            out = drive(exit_, timed_exit, plate_for(first + step))
            new = drive(entry, timed_entry, plate_for(first + stay_inside + step))
            for passage in (out, new):
                if passage.decided_by != "lane":
                    raise BenchError(f"offline phase: decided by {passage.decided_by}")
            if step >= warmup:
                offline += [out, new]
            on_step()
    finally:
        lanes.stop()
        if gateway_up:
            app.stop()
    return GateRun(online_entry, online_exit, offline, deadline_ms)


def run_bench_gate(cars: int, offline_cars: int, workdir: Path, *, warmup: int = WARMUP,
                   deadline_ms: int = DEFAULT_DEADLINE_MS,
                   console: Console | None = None) -> list[BenchRow]:
    """Start a private Mosquitto in ``workdir``; measure the baseline and the gate rows."""
    if cars < 1 or offline_cars < 1 or warmup < 0:
        raise ValueError("need at least one car online and one offline")
    workdir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        site = provision_simulated_site(workdir / "pki", SITE, entry_lanes=("in1",),
                                        exit_lanes=("out1",))
        broker = stack.enter_context(MosquittoBroker(workdir / "broker", site=site))
        if console is not None:
            console.print(f"broker: private mosquitto with TLS and ACLs on {broker.host}:"
                          f"{broker.port}")
        baseline = describe(BASELINE_RR, "latency", request_response(
            broker.address, requests=max(cars, 20), warmup=20, nodelay=True))
        done = [0]

        def step() -> None:
            done[0] += 1
            if console is not None and done[0] % 50 == 0:
                console.print(f"  {done[0]} cars", highlight=False)

        run = gate_runs(broker.address, workdir / "site", cars=cars, offline_cars=offline_cars,
                        warmup=warmup, deadline_ms=deadline_ms, on_step=step)
    alone = sum(1 for p in run.online_entry + run.online_exit if p.decided_by == "lane")
    note = (f"{alone} of them decided by the lane alone (gateway later than "
            f"{deadline_ms} ms)" if alone else "")
    online = describe(GATE_ONLINE, "latency",
                      [p.gate_ms for p in run.online_entry + run.online_exit], note=note)
    offline = describe(GATE_OFFLINE, "latency", [p.gate_ms for p in run.offline],
                       note=f"gateway stopped, broker up: every car waits out the "
                            f"{deadline_ms} ms decide deadline, then the lane decides from "
                            "its replica (exits: cars inside; entries: new cars)")
    deadline = describe(GATE_DEADLINE, "latency", [p.wait_ms for p in run.offline],
                        note=f"timing.decide_deadline_ms = {deadline_ms}, as the lane's own "
                             "stopwatch saw it (request built → gave up)")
    own = describe(GATE_OFFLINE_OWN, "latency", [p.gate_ms - p.wait_ms for p in run.offline],
                   note="loop event, plate read, journal (FULL), replica decision, evidence "
                        "and decision journaled, relay")
    return [
        baseline,
        compared(online, baseline),
        compared(describe(GATE_ONLINE_ENTRY, "latency",
                          [p.gate_ms for p in run.online_entry]), baseline),
        compared(describe(GATE_ONLINE_EXIT, "latency",
                          [p.gate_ms for p in run.online_exit]), baseline),
        compared(offline, baseline),
        compared(deadline, baseline),
        compared(own, baseline),
    ]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m simulator.bench_gate",
        description="Gate decision time, loop trigger to barrier command, online and "
                    "offline, beside the bare MQTT ping-pong.")
    parser.add_argument("--cars", type=int, default=DEFAULT_CARS, metavar="N",
                        help="cars in and out with the gateway answering (default %(default)s)")
    parser.add_argument("--offline-cars", type=int, default=DEFAULT_OFFLINE_CARS, metavar="M",
                        help="cars out and as many in with the gateway stopped; each waits "
                             "out the deadline (default %(default)s)")
    parser.add_argument("--deadline-ms", type=int, default=DEFAULT_DEADLINE_MS, metavar="MS",
                        help="the lanes' timing.decide_deadline_ms (default %(default)s)")
    parser.add_argument("--warmup", type=int, default=WARMUP, metavar="K",
                        help="cars thrown away first in each phase (default %(default)s)")
    parser.add_argument("--workdir", type=Path, default=None, metavar="DIR",
                        help="keep the broker log and SQLite files here")
    args = parser.parse_args(argv)
    if args.cars < 1 or args.offline_cars < 1 or args.warmup < 0:
        parser.error("--cars and --offline-cars must be ≥ 1, --warmup ≥ 0")
    if not 20 <= args.deadline_ms <= 10_000:
        parser.error("--deadline-ms must be within 20..10000 (LaneTiming's range)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # "deciding alone" warnings are the point here
    console = report_console()
    rows = run_and_report(
        lambda workdir: run_bench_gate(args.cars, args.offline_cars, workdir,
                                       warmup=args.warmup, deadline_ms=args.deadline_ms,
                                       console=console),
        workdir=args.workdir, prefix="pg-gate-", console=console,
        title=lambda wall: f"ParkGuard gate bench — {args.cars} cars online, "
                           f"{args.offline_cars} out + {args.offline_cars} in offline, decide "
                           f"deadline {args.deadline_ms} ms, warm-up {args.warmup}, {wall:.0f} s")
    return 0 if rows is not None else 1

if __name__ == "__main__":
    raise SystemExit(main())
