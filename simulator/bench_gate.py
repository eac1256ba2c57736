"""``make bench``: the gate decision time — loop trigger to barrier command — online, with the
gateway gone (it said so) and with the gateway silent, beside the bare MQTT ping-pong.

On a private Mosquitto (TLS, per-device users, ACLs) started for the run, one entry lane
(in1) and one exit lane (out1) of :class:`~simulator.site.SimulatedLanes` on mock pins and
the system clock, and a :class:`~gateway.app.GatewayApp` in a process of its own, as on a
site (``--gateway process``, :mod:`simulator.gateway_process`; ``--gateway inline`` puts it
in the bench's process, as before issue 23's profile):

1. **baseline** — the bare paho QoS 1 request/response with ``TCP_NODELAY`` of
   :mod:`simulator.bench` (lane in1 ↔ gateway): one MQTT round trip.
2. **online** — the gateway answers. The clock starts when the arming loop's pin goes high
   (the car arrives) and stops when the lane calls ``Barrier.raise_`` (the barrier command):
   loop event → plate read → decide request → ``vehicle_detected`` and ``plate_read``
   written while the gateway decides → gateway verdict → reply → ``decision`` written →
   relay. Those rows go on the card with the ``barrier_moved`` right after the relay, not
   before it (docs/lane.md, "The online decision waits for no fsync").
   Each car drives in, then out (an exit also prices the stay). The same cars are also
   driven with the gateway the other way (in the bench's process), in blocks alternating
   with the first (``--blocks``; a change in the shared machine's load falls on both), each
   block after a warm-up of its own: the row beside shows what one GIL for the lanes, the
   gateway and four paho threads cost (``--no-compare`` skips it). Every online car is
   traced hop by hop (:mod:`simulator.gate_trace`): the ``segments`` rows give p50/p90/p99
   of each hop for either way (``--no-segments`` skips it).
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
as :mod:`simulator.bench`: only ratios carry over between machines. The two lanes and their
car drivers share one process (one GIL) here, and the broker, both processes and whatever
else runs on the machine share its cores; a site gives each lane a Pi and the gateway a box.
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
from simulator.gate_trace import GateTrace, trace_lane
from simulator.gateway_process import BenchGateway, GatewayMode, start_gateway
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
GATE_ONLINE_INLINE = "gate decision online, gateway in-process"
SEGMENTS_PROCESS = "hops, gateway in its own process: total"
SEGMENTS_INLINE = "hops, gateway in-process: total"
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


def drive(lane: SimulatedLane, timed: _Timed, plate: str, trace: GateTrace | None = None,
          tag: str | None = None) -> GatePassage:
    """Drive one car through ``lane`` by its pins; time arming loop → barrier command
    (``trace`` with a ``tag``: note its hops, reported under that tag)."""
    controller, pins = lane.node.controller, lane.wiring
    verdicts = controller.verdicts
    with timed.lock:
        raised = len(timed.raises)
        timed.raised.clear()
    lane.camera.show(plate)
    started = time.perf_counter()
    if trace is not None:
        trace.begin(controller.lane, started, tag)
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
    if trace is not None:
        trace.mark_at(controller.lane, "relay", timed.raises[raised])
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
    inline_entry: list[GatePassage] = field(default_factory=list)
    """The same online cars with the gateway in the bench's process (``compare_inline``)."""
    inline_exit: list[GatePassage] = field(default_factory=list)
    trace: GateTrace | None = None
    """Every online car's hops, tagged ``process`` or ``inline`` (warm-up cars untagged)."""


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


def online_blocks(mode: GatewayMode, cars: int, *, compare_inline: bool,
                  blocks: int) -> list[tuple[GatewayMode, int]]:
    """The online phase's gateways in turn, with their measured cars: with
    ``compare_inline`` the two ways alternate in ``blocks`` blocks each (so a change of the
    shared machine's load falls on both), ending with ``mode``, which stays for the silent
    and offline phases.

    >>> online_blocks("process", 5, compare_inline=True, blocks=2)
    [('inline', 3), ('process', 3), ('inline', 2), ('process', 2)]
    >>> online_blocks("process", 5, compare_inline=False, blocks=2)
    [('process', 5)]
    """
    if not compare_inline:
        return [(mode, cars)]
    other: GatewayMode = "inline" if mode == "process" else "process"
    blocks = max(1, min(blocks, cars))
    sizes = [cars // blocks + (1 if index < cars % blocks else 0) for index in range(blocks)]
    return [pair for size in sizes for pair in ((other, size), (mode, size))]


def gate_runs(address: Callable[[str], BrokerAddress], workdir: Path, *, cars: int,
              offline_cars: int, warmup: int, deadline_ms: int, silent_cars: int | None = None,
              on_step: Callable[[], None] = lambda: None, gateway: GatewayMode = "process",
              compare_inline: bool = False, blocks: int = 2,
              trace: GateTrace | None = None) -> GateRun:
    """``warmup + cars`` cars in and out online; then ``warmup + silent_cars`` out and as
    many new ones in with the gateway silent (connected, its worker hung; default: as many as
    ``offline_cars``), then ``warmup + offline_cars`` out and in with the gateway stopped (it
    said ``offline``).

    ``gateway``: the gateway in a process of its own (``process``, as on a site) or in the
    bench's (``inline``); ``compare_inline``: the online cars again with the other one, in
    alternating blocks, each block after a warm-up of its own."""
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
    passages: dict[GatewayMode, tuple[list[GatePassage], list[GatePassage]]] = {
        "process": ([], []), "inline": ([], [])}
    plan = online_blocks(gateway, cars, compare_inline=compare_inline, blocks=blocks)
    app: BenchGateway = start_gateway(plan[0][0], config, trace)  # its stop: idempotent
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
        if trace is not None:
            for lane in (entry, exit_):
                trace_lane(trace, lane.node.controller.lane, lane.node)
        both = (entry.node.controller, exit_.node.controller)

        def hearing(state: str) -> None:
            _wait(lambda: all(c.gateway_availability == state for c in both),
                  f"both lanes on the broker, hearing the gateway {state}")

        hearing("online")
        base = [0]  # lane events emitted before this gateway started (stored by another)

        def settle() -> None:  # the gateway has stored what the lanes sent (as time would)
            app.settle(sum(c.events_emitted for c in both) - base[0])

        # Online: each car in, then out; the cars of the two later phases stay inside.
        index = 0
        for number, (mode, measured) in enumerate(plan):
            if number:  # the next gateway takes over the same file
                if trace is not None:
                    trace.merge(app.marks())
                app.stop()
                hearing("offline")
                base[0] = sum(c.events_emitted for c in both)
                app = start_gateway(mode, config, trace)
                hearing("online")
            for step in range(warmup + measured):
                kept = step >= warmup
                tag = mode if kept else None
                passage = drive(entry, timed[0], plate_for(index), trace, tag)
                settle()
                out = drive(exit_, timed[1], plate_for(index), trace, tag)
                settle()
                if kept:
                    passages[mode][0].append(passage)
                    passages[mode][1].append(out)
                index += 1
                on_step()
        first = index
        inside = [plate_for(index) for index in range(first, first + away)]
        newcomers = [plate_for(first + away + index) for index in range(away)]
        for plate in inside:
            drive(entry, timed[0], plate)
            settle()
            on_step()
        _wait(lambda: exit_.node.replica.sessions_inside == away,
              "the exit lane's replica to hold the cars inside")

        # Silent: the gateway is there (online) but answers nothing: every car waits.
        app.hang()
        silent = _offline_pairs(entry, exit_, timed, inside[:hushed], newcomers[:hushed],
                                warmup=warmup, asked=True, on_step=on_step)
        app.release()
        settle()  # the silent phase's passages reach the gateway and the exit lane's replica
        _wait(lambda: exit_.node.replica.sessions_inside == away,
              "the exit lane's replica to catch up after the silent phase")

        # Offline: the gateway goes and says so; the broker stays.
        if trace is not None:
            trace.merge(app.marks())
        app.stop()
        hearing("offline")
        offline = _offline_pairs(entry, exit_, timed, inside[hushed:], newcomers[hushed:],
                                 warmup=warmup, asked=False, on_step=on_step)
    finally:
        app.release()
        lanes.stop()
        app.stop()
    return GateRun(passages[gateway][0], passages[gateway][1], silent, offline, deadline_ms,
                   inline_entry=passages["inline"][0] if gateway == "process" else [],
                   inline_exit=passages["inline"][1] if gateway == "process" else [],
                   trace=trace)


def run_bench_gate(cars: int, offline_cars: int, workdir: Path, *, warmup: int = WARMUP,
                   deadline_ms: int = DEFAULT_DEADLINE_MS, silent_cars: int | None = None,
                   console: Console | None = None, gateway: GatewayMode = "process",
                   compare_inline: bool = True, blocks: int = 2,
                   segments: bool = True) -> list[BenchRow]:
    """Start a private Mosquitto in ``workdir``; measure the baseline and the gate rows
    (``silent_cars``: default as many as ``offline_cars``; ``gateway``, ``compare_inline``,
    ``blocks``: see :func:`gate_runs`; ``segments``: trace every online car's hops and add
    the segment rows)."""
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
                        on_step=step, gateway=gateway, compare_inline=compare_inline,
                        blocks=blocks, trace=GateTrace() if segments else None)
    where = {"process": "the gateway in its own process, as on a site",
             "inline": "the gateway in the bench's process (one GIL with both lanes)"}
    alone = sum(1 for p in run.online_entry + run.online_exit if p.decided_by == "lane")
    online = compared(describe(GATE_ONLINE, "latency",
                               [p.gate_ms for p in run.online_entry + run.online_exit]),
                      baseline)
    ratio = online.ratio_p99 or 0.0
    online_note = (f"{where[gateway]}; target p99 ≤ ×{ONLINE_TARGET_RATIO:g} the bare round "
                   f"trip's p99: {_verdict(ratio <= ONLINE_TARGET_RATIO)} (×{ratio:.1f}: "
                   f"{online.p99:.1f} against {baseline.p99:.1f} ms)")
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
    rows = [
        baseline,
        replace(online, note=online_note),
        compared(describe(GATE_ONLINE_ENTRY, "latency",
                          [p.gate_ms for p in run.online_entry]), baseline),
        compared(describe(GATE_ONLINE_EXIT, "latency",
                          [p.gate_ms for p in run.online_exit]), baseline),
    ]
    inline = run.inline_entry + run.inline_exit
    if inline:
        row = compared(describe(GATE_ONLINE_INLINE, "latency", [p.gate_ms for p in inline]),
                       baseline)
        rows.append(replace(row, note=(
            f"the same cars in blocks alternating with the row above (same load), with "
            f"{where['inline']}: the bench's figure before the gateway had its own process "
            f"(×{row.ratio_p99 or 0.0:.1f} p99)")))
    rows += [
        compared(replace(offline, note=offline_note), baseline),
        compared(silent, baseline),
        compared(deadline, baseline),
        compared(own, baseline),
    ]
    if run.trace is not None:
        for title, tag in ((SEGMENTS_PROCESS, "process"), (SEGMENTS_INLINE, "inline")):
            traced = run.trace.rows(title, tag)
            if traced:
                traced[0] = replace(traced[0], note=SEGMENT_NOTE)
            rows += [compared(row, baseline) for row in traced]
    return rows


SEGMENT_NOTE = ("each online car's hops (simulator/gate_trace.py): p50/p90/p99 of each "
                "segment taken separately, so they do not add up to the total's; rows in "
                "brackets overlap the others")


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
    parser.add_argument("--gateway", choices=("process", "inline"), default="process",
                        help="the gateway in a process of its own, as on a site (default), or "
                             "in the bench's process with the lanes (one GIL)")
    parser.add_argument("--no-compare", dest="compare", action="store_false",
                        help="skip the online cars with the gateway the other way")
    parser.add_argument("--blocks", type=int, default=2, metavar="B",
                        help="alternating blocks of each way in the online phase "
                             "(default %(default)s)")
    parser.add_argument("--no-segments", dest="segments", action="store_false",
                        help="do not trace the hops of each online car")
    args = parser.parse_args(argv)
    if args.cars < 1 or args.offline_cars < 1 or args.silent_cars < 1 or args.warmup < 0 \
            or args.blocks < 1:
        parser.error("--cars, --offline-cars, --silent-cars and --blocks must be ≥ 1, "
                     "--warmup ≥ 0")
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
                                       console=console, gateway=args.gateway,
                                       compare_inline=args.compare, blocks=args.blocks,
                                       segments=args.segments),
        workdir=args.workdir, prefix="pg-gate-", console=console,
        title=lambda wall: f"ParkGuard gate bench — {args.cars} cars online, "
                           f"{args.silent_cars} out + {args.silent_cars} in silent, "
                           f"{args.offline_cars} + {args.offline_cars} offline, decide deadline "
                           f"{args.deadline_ms} ms, warm-up {args.warmup}, gateway "
                           f"{'in its own process' if args.gateway == 'process' else 'inline'}"
                           f"{' (and the other way beside)' if args.compare else ''}, "
                           f"{wall:.0f} s")
    return 0 if rows is not None else 1

if __name__ == "__main__":
    raise SystemExit(main())
