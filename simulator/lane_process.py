"""One lane node as a process of its own, with the simulated cars that drive it.

``python -m simulator.lane_process --config FILE --cars N --seed S`` runs one
:class:`~firmware.lane.node.LaneNode` on gpiozero ``MockFactory`` pins, journaling to the
config's ``[journal] path``, and drives ``N`` seeded cars through it with a
:class:`~simulator.driver.CarDriver`. The pins are mock, so the driver has to live in the
same process: this is what a test kills with SIGKILL (a power cut, a kernel panic) and
starts again on the same journal.

It reports on stdout, one line at a time (flushed), so a parent can follow it::

    ready lane=in1 seq=41 unsent=3 relay=0 fire=0 barrier=closed mode=normal
    car 0 open visitor_entry 0
    car 1 refuse offline_plate_unread 0
    done cars=2 emitted=12 seq=53

``ready`` comes once the node has started (connected, or working offline and retrying):
``relay`` is the barrier relay pin as the restarted lane set it, ``fire`` the fire alarm it
remembered from its journal, ``seq`` the highest journaled seq it continues from. SIGTERM
or SIGINT stop it cleanly after the car in progress. ``--hold`` keeps it running after the
last car until then.

For the fire bench (``simulator/bench_fire.py``, lanes as processes as on a site):
``--report-relay`` says ``relay 1 <ns>`` / ``relay 0 <ns>`` each time the barrier relay pin
changes, ``<ns>`` being the pin's own stamp of the change (``time.monotonic()``, in ns: the
clock every process on the machine shares), so the parent times the barrier without reaching
into the process; and
with ``--hold`` the line ``idle`` on stdin is answered by ``idle`` once the lane's worker has
nothing left to do (``connected`` likewise once it is on the broker).

Simulated time: by default the system clock; ``--time-origin ISO --time-scale X
--time-anchor UNIX`` put it on the shared scaled clock of ``parkguard gateway`` (see
:func:`parkguard.clock.shared_scaled_clock`).
"""

from __future__ import annotations

import argparse
import logging
import random
import signal
import sys
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from gpiozero.pins.mock import MockFactory, MockPin

from firmware.lane.config import LaneConfig
from firmware.lane.node import LaneNode
from parkguard.clock import Clock, SystemClock, shared_scaled_clock
from parkguard.configfile import load_config
from simulator.camera import GroundTruthReader, SimulatedCamera
from simulator.driver import CarDriver, SimulatedLaneWiring
from simulator.traffic import random_plate


def say(line: str) -> None:
    """One line to the parent, at once (a SIGKILL must not eat what was already said)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def seeded_plates(seed: int, count: int) -> list[str]:
    """``count`` distinct plates from ``seed``: a restart with another seed meets new cars."""
    rng = random.Random(seed)
    plates: list[str] = []
    seen: set[str] = set()
    while len(plates) < count:
        plate = random_plate(rng)
        if plate not in seen:
            seen.add(plate)
            plates.append(plate)
    return plates


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m simulator.lane_process",
        description="One lane node on mock pins with its own simulated cars, in a process "
                    "of its own (crash tests, the fire bench).")
    parser.add_argument("--config", type=Path, required=True, metavar="FILE",
                        help="lane TOML (LaneConfig); [journal] path is the file it keeps")
    parser.add_argument("--cars", type=int, default=10, metavar="N", help="cars to drive")
    parser.add_argument("--seed", type=int, default=7, metavar="S", help="plates' seed")
    parser.add_argument("--pause-ms", type=float, default=0.0, metavar="MS",
                        help="real time between two cars")
    parser.add_argument("--hold", action="store_true",
                        help="after the last car, keep running until SIGTERM")
    parser.add_argument("--time-origin", type=datetime.fromisoformat, default=None,
                        metavar="ISO", help="simulated clock: the instant at --time-anchor")
    parser.add_argument("--time-scale", type=float, default=1.0, metavar="X",
                        help="simulated seconds per real second")
    parser.add_argument("--time-anchor", type=float, default=None, metavar="UNIX",
                        help="Unix time at which the simulated clock read --time-origin")
    parser.add_argument("--report-relay", action="store_true",
                        help="say 'relay 0|1 <monotonic ns>' at each change of the relay pin")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    if args.cars < 0 or args.pause_ms < 0 or args.time_scale <= 0:
        parser.error("--cars and --pause-ms must be ≥ 0, --time-scale > 0")
    return args


def clock_of(args: argparse.Namespace) -> Clock:
    if args.time_origin is None:
        return SystemClock()
    origin: datetime = args.time_origin
    if origin.tzinfo is None:
        origin = origin.replace(tzinfo=UTC)
    return shared_scaled_clock(origin, args.time_scale, anchor=args.time_anchor)


class ReportingPin(MockPin):  # type: ignore[misc]  # gpiozero has no types
    """A mock output pin that says when it changed (``--report-relay``)."""

    def _change_state(self, value: bool) -> bool:
        changed = bool(super()._change_state(value))
        if changed:
            # MockPin stamps each change with time.monotonic(): report that instant.
            say(f"relay {int(value)} {int(self._last_change * 1e9)}")
        return changed


def _answer(node: LaneNode) -> None:
    """``--hold``: answer the parent's questions on stdin, one line each."""
    for line in sys.stdin:
        question = line.strip()
        if question == "idle":
            node.controller.wait_idle(timeout=10)
            say("idle")
        elif question == "connected" and node.bus.connected.wait(timeout=20):
            say("connected")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = load_config(LaneConfig, args.config)
    if config.journal.path is None:
        # On mock pins a lane without a path gets a scratch journal: a restart would
        # forget everything, which is the opposite of what this runner is for.
        print(f"{args.config}: set [journal] path", file=sys.stderr)
        return 2
    clock = clock_of(args)
    stopping = threading.Event()

    def stop(_signum: int, _frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    factory = MockFactory()
    if args.report_relay:  # before the node takes the pin: its relay is this one
        factory.pin(config.pins.barrier_relay, pin_class=ReportingPin)
    camera = SimulatedCamera(clock=clock)
    node = LaneNode(config, clock=clock, camera=camera, reader=GroundTruthReader(),
                    pin_factory=factory)
    wiring = SimulatedLaneWiring(config, factory)
    node.start()
    controller = node.controller
    try:
        say(f"ready lane={config.lane} seq={controller.last_seq} "
            f"unsent={node.journal.unsent_count()} relay={int(bool(wiring.relay.state))} "
            f"fire={int(controller.fire_alarm)} barrier={controller.barrier_position} "
            f"mode={controller.mode}")
        driver = CarDriver(wiring, camera, controller)
        done = 0
        for index, plate in enumerate(seeded_plates(args.seed, args.cars)):
            if stopping.is_set():
                break
            passage = driver.drive_through(plate)
            done += 1
            say(f"car {index} {'open' if passage.opened else 'refuse'} {passage.reason} "
                f"{passage.fee_fen}")
            if args.pause_ms:
                stopping.wait(args.pause_ms / 1000)
        say(f"done cars={done} emitted={controller.events_emitted} seq={controller.last_seq}")
        if args.hold:
            threading.Thread(target=_answer, args=(node,), name="answer",
                             daemon=True).start()
        while args.hold and not stopping.is_set():
            stopping.wait(0.2)
    finally:
        node.stop()
    say(f"stopped unsent={_unsent_after_stop(config)}")
    return 0


def _unsent_after_stop(config: LaneConfig) -> int:
    """Events still unacknowledged in the journal after a clean stop (broker gone: > 0)."""
    from firmware.lane.journal import Journal

    journal = Journal(config.journal_path())
    try:
        return journal.unsent_count()
    finally:
        journal.close()


if __name__ == "__main__":
    raise SystemExit(main())
