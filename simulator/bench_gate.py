"""``make bench``: the gate decision time — loop trigger to barrier command — online, with the
gateway gone (it said so) and with the gateway silent, beside the bare MQTT ping-pong.

On a private Mosquitto (TLS, per-device users, ACLs) started for the run, one entry lane
(in1) and one exit lane (out1) of :class:`~simulator.site.SimulatedLanes` on mock pins and
the system clock, and an in-process :class:`~gateway.app.GatewayApp`:

1. **baseline** — the bare paho QoS 1 request/response with ``TCP_NODELAY`` of
   :mod:`simulator.bench` (lane in1 ↔ gateway): one MQTT round trip.
2. **online** — the gateway answers. The clock starts when the arming loop's pin goes high
   (the car arrives) and stops when the lane calls ``Barrier.raise_`` (the barrier command):
   loop event → plate read → decide request → ``vehicle_detected`` and ``plate_read``
   written while the gateway decides → gateway verdict → reply → ``decision`` written →
   relay. Those rows go on the card with the ``barrier_moved`` right after the relay, not
   before it (docs/lane.md, "The online decision waits for no fsync").
   Each car drives in, then out (an exit also prices the stay).
3. **silent** — the gateway is still connected (its availability says ``online``) but its
   worker hangs: every lane waits out its decide deadline (``timing.decide_deadline_ms``,
   300 ms by default, reported on its own row as the lane measured it), then decides from its
   replica. This is also what every car paid with the gateway stopped before the lanes knew
   its availability (issue 23: offline p99 317 ms), so it is the same-run "before" of the
   next row. Its last row is that decision *without* the wait: what the lane itself costs
   (replica look-up, pricing, the evidence and the decision journaled with FULL sync).
4. **offline** — the gateway is stopped (the broker stays) and has said ``offline`` on
   ``gateway/availability``: the lanes decide from the replica at once, never asking.
   Exits find cars that came in online and are in the exit lane's replica; entries are new
   cars.

Targets (issue 23), printed as met or not: offline p99 ≤ :data:`OFFLINE_TARGET_MS`; online
p99 ≤ :data:`ONLINE_TARGET_RATIO` × the bare round trip's p99 in the same run.

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
from dataclasses import dataclass, field, replace
from pathlib import Path

from rich.console import Console

from broker.runner import MosquittoBroker
from firmware.lane.config import LaneTiming
from gateway.app import GatewayApp
from gateway.config import GatewayConfig, ReplicaSettings
from gateway.runtime.inbox import Job
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
DEFAULT_OFFLINE_CARS = 200
DEFAULT_SILENT_CARS = 40
DEFAULT_DEADLINE_MS = 300
WARMUP = 5
_TIMEOUT_S = 10.0

GATE_ONLINE = "gate decision online: loop → barrier command"
GATE_ONLINE_ENTRY = "  … entry lane (gateway answers)"
GATE_ONLINE_EXIT = "  … exit lane (gateway prices the stay)"
GATE_OFFLINE = "gate decision offline: loop → barrier command"
GATE_SILENT = "gateway silent (before): loop → barrier"
GATE_DEADLINE = "  … of which waiting out the decide deadline"
GATE_OFFLINE_OWN = "  … silent without the deadline wait"
#: Issue 23's targets: the offline decision's p99, and the online one's p99 against the bare
#: request/response's p99 in the same run.
OFFLINE_TARGET_MS = 20.0
ONLINE_TARGET_RATIO = 3.0


@dataclass
class _Timed:
    """Barrier commands of one lane, as ``perf_counter`` instants."""

    raises: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    raised: threading.Event = field(default_factory=threading.Event)
    """Set at each barrier command: the driver waits on it, not by polling, so the bench's
    own thread does not compete for the GIL with the lane it is timing."""


def _instrument(lane: SimulatedLane) -> _Timed:
    """Note the instant of every ``Barrier.raise_`` call (the barrier command) of ``lane``."""
    timed = _Timed()
    barrier = lane.node.hardware.barrier
    raise_ = barrier.raise_

    def recording() -> None:
        at = time.perf_counter()
        with timed.lock:
            timed.raises.append(at)
        timed.raised.set()
        raise_()

    setattr(barrier, "raise_", recording)  # noqa: B010 - an instance attribute, on purpose
    return timed


def _wait(condition: Callable[[], bool], what: str) -> None:
    """Poll for something untimed (a car cleared, the gateway caught up)."""
    deadline = time.monotonic() + _TIMEOUT_S
    while not condition():
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {_TIMEOUT_S} s waiting for {what}")
        time.sleep(0.001)


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
        timed.raised.clear()
    lane.camera.show(plate)
    started = time.perf_counter()
    pins.arming.drive_high()
    timed.raised.wait(_TIMEOUT_S)  # a refusal raises nothing: the verdict tells below
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
    silent: list[GatePassage]
    offline: list[GatePassage]
    deadline_ms: int


def _offline_pairs(entry: SimulatedLane, exit_: SimulatedLane, timed: tuple[_Timed, _Timed],
                   leaving: list[str], arriving: list[str], *, warmup: int, asked: bool,
                   on_step: Callable[[], None]) -> list[GatePassage]:
    """Each car of ``leaving`` out and one of ``arriving`` in, every one decided by the lane
    (after asking the gateway, or without asking when ``asked`` is False); the first
    ``warmup`` pairs thrown away."""
    passages: list[GatePassage] = []
    for step, (out_plate, in_plate) in enumerate(zip(leaving, arriving, strict=True)):
        out = drive(exit_, timed[1], out_plate)
        new = drive(entry, timed[0], in_plate)
        for passage in (out, new):
            if passage.decided_by != "lane":
                raise BenchError(f"gateway away: decided by {passage.decided_by}")
            if not asked and passage.wait_ms != 0.0:
                raise BenchError(f"gateway said offline, yet the lane waited "
                                 f"{passage.wait_ms:.1f} ms for it")
        if step >= warmup:
            passages += [out, new]
        on_step()
    return passages


def gate_runs(address: Callable[[str], BrokerAddress], workdir: Path, *, cars: int,
              offline_cars: int, warmup: int, deadline_ms: int, silent_cars: int | None = None,
              on_step: Callable[[], None] = lambda: None) -> GateRun:
    """``warmup + cars`` cars in and out online; then ``warmup + silent_cars`` out and as
    many new ones in with the gateway silent (connected, its worker hung; default: as many as
    ``offline_cars``), then ``warmup + offline_cars`` out and in with the gateway stopped (it
    said ``offline``)."""
    workdir.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        (workdir / f"gateway.db{suffix}").unlink(missing_ok=True)
    clock = SystemClock()
    config = GatewayConfig(site=SITE, database=workdir / "gateway.db",
                           broker=settings_of(address("gateway")),
                           replicas=ReplicaSettings(lanes=["in1", "out1"]))
    hushed = warmup + (offline_cars if silent_cars is None else silent_cars)
    gone = warmup + offline_cars
    away = hushed + gone  # cars that come in online and leave while the gateway is away
    online_entry: list[GatePassage] = []
    online_exit: list[GatePassage] = []
    app = GatewayApp(config, clock=clock).start()
    gateway_up = True
    release = threading.Event()
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
        timed = (_instrument(entry), _instrument(exit_))
        both = (entry.node.controller, exit_.node.controller)
        _wait(lambda: all(c.gateway_availability == "online" for c in both),
              "both lanes on the broker, hearing the gateway online")
        service = app.service

        def settle() -> None:  # the gateway has stored what the lanes sent (as time would)
            emitted = sum(c.events_emitted for c in both)
            _wait(lambda: service.events_stored >= emitted, "the gateway to store the events")
            service.wait_idle()

        # Online: each car in, then out; the cars of the two later phases stay inside.
        for index in range(warmup + cars):
            passage = drive(entry, timed[0], plate_for(index))
            settle()
            out = drive(exit_, timed[1], plate_for(index))
            settle()
            if index >= warmup:
                online_entry.append(passage)
                online_exit.append(out)
            on_step()
        first = warmup + cars
        inside = [plate_for(index) for index in range(first, first + away)]
        newcomers = [plate_for(first + away + index) for index in range(away)]
        for plate in inside:
            drive(entry, timed[0], plate)
            settle()
            on_step()
        _wait(lambda: exit_.node.replica.sessions_inside == away,
              "the exit lane's replica to hold the cars inside")

        # Silent: the gateway is there (online) but answers nothing: every car waits.
        hung = threading.Event()

        def hang() -> None:
            hung.set()
            release.wait(600)

        app.inbox.put(Job.of(hang))
        if not hung.wait(_TIMEOUT_S):
            raise BenchError("the gateway's worker did not take the hang")
        silent = _offline_pairs(entry, exit_, timed, inside[:hushed], newcomers[:hushed],
                                warmup=warmup, asked=True, on_step=on_step)
        release.set()
        settle()  # the silent phase's passages reach the gateway and the exit lane's replica
        _wait(lambda: exit_.node.replica.sessions_inside == away,
              "the exit lane's replica to catch up after the silent phase")

        # Offline: the gateway goes and says so; the broker stays.
        app.stop()
        gateway_up = False
        _wait(lambda: all(c.gateway_availability == "offline" for c in both),
              "both lanes to hear the gateway offline")
        offline = _offline_pairs(entry, exit_, timed, inside[hushed:], newcomers[hushed:],
                                 warmup=warmup, asked=False, on_step=on_step)
    finally:
        release.set()
        lanes.stop()
        if gateway_up:
            app.stop()
    return GateRun(online_entry, online_exit, silent, offline, deadline_ms)


def run_bench_gate(cars: int, offline_cars: int, workdir: Path, *, warmup: int = WARMUP,
                   deadline_ms: int = DEFAULT_DEADLINE_MS, silent_cars: int | None = None,
                   console: Console | None = None) -> list[BenchRow]:
    """Start a private Mosquitto in ``workdir``; measure the baseline and the gate rows
    (``silent_cars``: default as many as ``offline_cars``)."""
    if cars < 1 or offline_cars < 1 or warmup < 0 or (silent_cars or 1) < 1:
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
                        warmup=warmup, deadline_ms=deadline_ms, silent_cars=silent_cars,
                        on_step=step)
    alone = sum(1 for p in run.online_entry + run.online_exit if p.decided_by == "lane")
    online = compared(describe(GATE_ONLINE, "latency",
                               [p.gate_ms for p in run.online_entry + run.online_exit]),
                      baseline)
    ratio = online.ratio_p99 or 0.0
    online_note = (f"target p99 ≤ ×{ONLINE_TARGET_RATIO:g} the bare round trip's p99: "
                   f"{_verdict(ratio <= ONLINE_TARGET_RATIO)} (×{ratio:.1f}: {online.p99:.1f} "
                   f"against {baseline.p99:.1f} ms)")
    if alone:
        online_note += (f"; {alone} of them decided by the lane alone (gateway later than "
                        f"{deadline_ms} ms)")
    offline = describe(GATE_OFFLINE, "latency", [p.gate_ms for p in run.offline])
    offline_note = (f"gateway stopped, broker up, its availability says offline: the lane "
                    f"decides from its replica at once (exits: cars inside; entries: new cars); "
                    f"target p99 ≤ {OFFLINE_TARGET_MS:g} ms: "
                    f"{_verdict(offline.p99 <= OFFLINE_TARGET_MS)} ({offline.p99:.1f} ms)")
    silent = describe(GATE_SILENT, "latency", [p.gate_ms for p in run.silent],
                      note=f"gateway connected (online) but its worker hung: every car waits "
                           f"out the {deadline_ms} ms decide deadline, then the lane decides "
                           "from its replica; what every offline car paid before the lanes "
                           "knew the gateway's availability")
    deadline = describe(GATE_DEADLINE, "latency", [p.wait_ms for p in run.silent],
                        note=f"timing.decide_deadline_ms = {deadline_ms}, as the lane's own "
                             "stopwatch saw it (request built → gave up)")
    own = describe(GATE_OFFLINE_OWN, "latency", [p.gate_ms - p.wait_ms for p in run.silent],
                   note="loop event, plate read, journal (FULL), replica decision, evidence "
                        "and decision journaled, relay")
    return [
        baseline,
        replace(online, note=online_note),
        compared(describe(GATE_ONLINE_ENTRY, "latency",
                          [p.gate_ms for p in run.online_entry]), baseline),
        compared(describe(GATE_ONLINE_EXIT, "latency",
                          [p.gate_ms for p in run.online_exit]), baseline),
        compared(replace(offline, note=offline_note), baseline),
        compared(silent, baseline),
        compared(deadline, baseline),
        compared(own, baseline),
    ]


def _verdict(met: bool) -> str:
    return "met" if met else "NOT MET"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m simulator.bench_gate",
        description="Gate decision time, loop trigger to barrier command, online and "
                    "offline, beside the bare MQTT ping-pong.")
    parser.add_argument("--cars", type=int, default=DEFAULT_CARS, metavar="N",
                        help="cars in and out with the gateway answering (default %(default)s)")
    parser.add_argument("--offline-cars", type=int, default=DEFAULT_OFFLINE_CARS, metavar="M",
                        help="cars out and as many in with the gateway stopped, its "
                             "availability saying offline (default %(default)s)")
    parser.add_argument("--silent-cars", type=int, default=DEFAULT_SILENT_CARS, metavar="S",
                        help="cars out and as many in with the gateway silent: each waits out "
                             "the deadline (default %(default)s)")
    parser.add_argument("--deadline-ms", type=int, default=DEFAULT_DEADLINE_MS, metavar="MS",
                        help="the lanes' timing.decide_deadline_ms (default %(default)s)")
    parser.add_argument("--warmup", type=int, default=WARMUP, metavar="K",
                        help="cars thrown away first in each phase (default %(default)s)")
    parser.add_argument("--workdir", type=Path, default=None, metavar="DIR",
                        help="keep the broker log and SQLite files here")
    args = parser.parse_args(argv)
    if args.cars < 1 or args.offline_cars < 1 or args.silent_cars < 1 or args.warmup < 0:
        parser.error("--cars, --offline-cars and --silent-cars must be ≥ 1, --warmup ≥ 0")
    if not 20 <= args.deadline_ms <= 10_000:
        parser.error("--deadline-ms must be within 20..10000 (LaneTiming's range)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # "deciding alone" warnings are the point here
    console = report_console()
    rows = run_and_report(
        lambda workdir: run_bench_gate(args.cars, args.offline_cars, workdir,
                                       silent_cars=args.silent_cars,
                                       warmup=args.warmup, deadline_ms=args.deadline_ms,
                                       console=console),
        workdir=args.workdir, prefix="pg-gate-", console=console,
        title=lambda wall: f"ParkGuard gate bench — {args.cars} cars online, "
                           f"{args.silent_cars} out + {args.silent_cars} in silent, "
                           f"{args.offline_cars} + {args.offline_cars} offline, decide deadline "
                           f"{args.deadline_ms} ms, warm-up {args.warmup}, {wall:.0f} s")
    return 0 if rows is not None else 1

if __name__ == "__main__":
    raise SystemExit(main())
